"""Short confirmations shown after a form's redirect (`?ok=<key>`), marked for translation."""

from __future__ import annotations

from web.i18n import N_, gettext

FLASH = {
    "signed_out": N_("You are signed out."),
    "language": N_("Language changed."),
    "relay_off": N_("Relay off queued for the meter: whether the meter did it shows below."),
    "relay_on": N_("Relay on queued for the meter: whether the meter did it shows below."),
    "read": N_("Reading request queued for the meter: its outcome shows below."),
    "topup": N_("Payment recorded; the credit is queued for the meter: its outcome shows below."),
    "tariff": N_("Tariff changed in billing; the meter's copy is queued: its outcome shows below."),
    "alarm_ack": N_("Alarm acknowledged."),
    "alarm_rule_saved": N_("Alarm rule saved."),
    "held_credit_sent": N_("The credit the wallet held is on its way to the meter."),
    "alarm_rule_removed": N_("Alarm rule removed."),
    "reading_plan_saved": N_("Reading plan saved."),
    "reading_run_started": N_("Reading run started: its read requests go out at the plan's pace."),
    "webhook_enabled": N_("Subscription enabled: new events are delivered to it again."),
    "webhook_disabled": N_("Subscription disabled: it is told nothing new; its pending deliveries wait."),
    "webhook_resent": N_("The delivery is queued again, with the same event id."),
    "report_scheduled": N_("Report scheduled: it goes by e-mail at the next midnight (UTC)."),
    "report_due_now": N_("The report goes by e-mail on the scheduler's next run."),
    "report_unscheduled": N_("The report is no longer sent by e-mail."),
    "webhook_resent_dead": N_("Every dead delivery is queued again, each with its event id."),
    "cancelled": N_("Command cancelled: it will not be sent."),
    "set_power_limit": N_("Power limit queued for the meter: its outcome shows below."),
    "time_sync": N_("Time sync queued for the meter: its outcome shows below."),
    "ping": N_("Ping queued for the meter: its outcome shows below."),
    "clear_tamper": N_("Clear tamper queued for the meter: its outcome shows below."),
    "configure": N_("Settings queued for the meter: its outcome shows below."),
    "key_change": N_(
        "Key change queued under the key in force; the new key takes over when the meter acknowledges it."
    ),
    "emergency": N_("Emergency credit, on loan, queued for the meter: its outcome shows below."),
    "group": N_("Group job started; its progress is below."),
    "sts_token": N_("STS token issued: the subscriber types its 20 digits at the meter's keypad."),
    "sts_keypad": N_("STS keypad recorded."),
    "sts_key_change": N_("Key change tokens issued: the subscriber types both, in order."),
    "sts_key_accepted": N_("The new key revision and base date are in force."),
    "portal_sts_token": N_("Your keypad token is below: type its 20 digits at your meter."),
    "reissued": N_("The credit is queued again with the same transfer id; the meter credits it once."),
    "operator_created": N_("Operator created."),
    "operator_contact": N_("Contact saved: alarm rules naming the operator's role reach these."),
    "key_revoked": N_("API key revoked."),
    "otp_sent": N_("If the code is right, a sign-in code is on its way to your phone."),
    "profile": N_("Profile saved."),
    "meter_installed": N_("Meter installed."),
    "meter_replaced": N_("Meter replaced; the old one is archived."),
    "meter_archived": N_("Meter archived."),
    "meter_profile": N_("Profile saved: commands are sealed in it from now on."),
    "transformer_added": N_("Transformer registered."),
    "meters_attached": N_("Meters attached to the transformer."),
    "holiday_set": N_("Holiday saved."),
    "holiday_removed": N_("Holiday removed."),
    "subscriber_created": N_("Subscriber created."),
    "subscriber_saved": N_("Subscriber saved."),
    "conflict_credit": N_("Payment credited; the conflict is resolved."),
    "conflict_dismiss": N_("Conflict dismissed; nothing reached the ledger."),
    "reconciliation_started": N_("Reconciliation started; this page follows it."),
    "reconciliation_resumed": N_("Reconciliation carried on from where it stopped."),
    "charged": N_("Charge added to the debt."),
    "adjusted": N_("Account adjusted."),
    "refunded": N_("Cash payment refunded on the ledger."),
    "tariff_created": N_("Tariff created. Add its prices as a version."),
    "tariff_version": N_("Price version added. Push it to send it to the meters."),
    "tariff_push": N_("The version is on its way to every meter on the tariff."),
    "reading_entered": N_("Reading saved and checked against the meter's history."),
    "handset_sent": N_("Sent to the short number; the answer shows here once it is sent (refresh)."),
}

# Role names as people read them (the role codes stay English in data and API).
ROLE_NAMES = {
    "admin": N_("admin"),
    "operator": N_("operator"),
    "cashier": N_("cashier"),
    "viewer": N_("viewer"),
    "auditor": N_("auditor"),
    "subscriber": N_("subscriber"),
}


def flash_message(key: str) -> str:
    message = FLASH.get(key)
    return gettext(message) if message else ""
