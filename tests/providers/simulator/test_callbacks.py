"""Status callbacks: delivered later, duplicated and reordered when configured, retried on failure."""

from tests.providers.simulator.conftest import sms, wait_for

STATUS = "/api/webhooks/sms/status"


def statuses(receiver) -> list[str]:
    return [request.form()["MessageStatus"] for request in receiver.on(STATUS)]


def test_every_callback_is_delivered_twice_at_a_duplicate_rate_of_one(start_simulator, receiver):
    sim = start_simulator(duplicate_rate=1.0)

    sim.twilio(sms())

    wait_for(lambda: len(receiver.on(STATUS)) == 6, "six callbacks")
    assert sorted(statuses(receiver)) == sorted(["queued", "sent", "delivered"] * 2)
    bodies = [request.body for request in receiver.on(STATUS)]
    assert len(set(bodies)) == 3  # a duplicate is the same request again
    callbacks = sim.stats()["callbacks"]
    assert (callbacks["scheduled"], callbacks["duplicates"]) == (3, 3)
    wait_for(lambda: sim.stats()["callbacks"]["delivered"] == 6, "all six counted delivered")


def test_callbacks_arrive_in_reverse_order_at_an_out_of_order_rate_of_one(start_simulator, receiver):
    sim = start_simulator(out_of_order_rate=1.0, callback_delay_ms=(300, 300), config={"callback_workers": 1})

    sim.twilio(sms())

    wait_for(lambda: len(receiver.on(STATUS)) == 3, "three callbacks")
    assert statuses(receiver) == ["delivered", "sent", "queued"]


def test_a_failed_callback_is_retried_until_the_service_takes_it(start_simulator, receiver):
    receiver.fail_first = 2
    sim = start_simulator(config={"callback_workers": 1})

    sim.twilio(sms())

    wait_for(lambda: sim.stats()["callbacks"]["delivered"] == 3, "three delivered callbacks")
    assert sim.stats()["callbacks"]["retries"] == 2
    assert len(receiver.on(STATUS)) == 5
    assert sorted(set(statuses(receiver))) == ["delivered", "queued", "sent"]


def test_a_callback_is_given_up_after_its_attempts(start_simulator, receiver):
    receiver.fail_first = 1000
    sim = start_simulator(config={"callback_attempts": 2})

    sim.twilio(sms())

    wait_for(lambda: sim.stats()["callbacks"]["failed"] == 3, "three callbacks given up")
    assert len(receiver.on(STATUS)) == 6
    assert sim.stats()["callbacks"]["pending"] == 0


def test_no_callbacks_when_switched_off(start_simulator, receiver):
    sim = start_simulator(callbacks=False)

    sim.twilio(sms())
    sim.post_json("/control", {"callbacks": True})
    sim.twilio(sms())

    wait_for(lambda: sim.stats()["callbacks"]["delivered"] == 3, "the second message's callbacks")
    assert sim.stats()["callbacks"]["scheduled"] == 3
    assert sim.stats()["twilio"]["sends"] == 2


def test_paused_callbacks_wait_and_are_posted_when_the_pause_ends(start_simulator, receiver):
    sim = start_simulator(callbacks_paused=True)
    sim.twilio(sms())
    sim.twilio(sms())

    held = sim.stats()["callbacks"]["pending"]
    posted_while_paused = len(receiver.on(STATUS))
    sim.post_json("/control", {"callbacks_paused": False})

    assert (held, posted_while_paused) == (6, 0)
    wait_for(lambda: sim.stats()["callbacks"]["delivered"] == 6, "the held callbacks")
