{#
    A booking's status, from what the ledger and Duffel say about it; the first rule that
    matches wins (see the `booking_status` docs block):
      cancelled         charged or ticketed, then refunded in the ledger or cancelled in Duffel
      rejected          the tenant's approval decision is `rejected`
      confirmed         charged (posted deduction) or ticketed (paid Duffel order)
      pending_approval  an approval was requested and nothing has been decided or charged
      failed            anything else: never charged, never ticketed, not awaiting approval
#}
{% macro booking_status(
    deduction_transaction_id,
    refund_transaction_id,
    order_paid_at,
    order_cancelled_at,
    approval_requested_at,
    approval_decision
) -%}
    case
        when ({{ deduction_transaction_id }} is not null or {{ order_paid_at }} is not null)
            and ({{ refund_transaction_id }} is not null or {{ order_cancelled_at }} is not null)
            then 'cancelled'
        when {{ approval_decision }} = 'rejected' then 'rejected'
        when {{ deduction_transaction_id }} is not null or {{ order_paid_at }} is not null
            then 'confirmed'
        when {{ approval_requested_at }} is not null and {{ approval_decision }} is null
            then 'pending_approval'
        else 'failed'
    end
{%- endmacro %}
