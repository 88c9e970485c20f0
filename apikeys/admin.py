from django.contrib import admin, messages
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apikeys.models import ApiKey
from apikeys.services import api_key_create, api_key_revoke

_DETAIL_FIELDS = ("name", "prefix", "created_at", "last_used_at", "revoked_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are added (by name) and revoked here, never edited; the key itself is shown once, on creation."""

    list_display = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "=prefix")
    ordering = ("-created_at",)
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        return ("name",) if obj is None else _DETAIL_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else _DETAIL_FIELDS

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row says who had access and when it was last used

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def add_view(self, request, form_url="", extra_context=None):
        # Every save shows the new key on its own page; "save and ..." variants would skip it.
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False, "show_save_and_continue": False}
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        created, key = api_key_create(name=obj.name)
        obj.pk = created.pk
        obj.refresh_from_db()
        obj.created_key = key  # for response_add only; never saved

    def response_add(self, request, obj, post_url_continue=None):
        # The key is rendered into this one response (which the admin marks no-store) rather than
        # kept in a message, which would put it in a cookie or the session on its way to the next page.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f'API key "{obj.name}" created',
            "api_key": obj,
            "key": obj.created_key,
        }
        return TemplateResponse(request, "admin/apikeys/apikey/created.html", context)

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        revoked = sum(api_key_revoke(api_key=api_key) for api_key in queryset)
        already = queryset.count() - revoked
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
        if already:
            self.message_user(request, f"{already} were already revoked and keep their date.", messages.WARNING)
