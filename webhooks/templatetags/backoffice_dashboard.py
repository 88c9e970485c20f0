from django import template

from webhooks.dashboard import CHART_HOURS, dashboard_cards, dashboard_chart_svg, dashboard_legend

register = template.Library()


@register.inclusion_tag("admin/backoffice/dashboard.html")
def backoffice_dashboard():
    return {
        "cards": dashboard_cards(),
        "chart": dashboard_chart_svg(),
        "legend": dashboard_legend(),
        "hours": CHART_HOURS,
    }
