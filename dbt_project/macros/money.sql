{#
    The money rules, written once. Every amount is DECIMAL from source to mart: rates are
    multiplied, never divided (DuckDB turns DECIMAL / x into DOUBLE), literals are cast to
    DECIMAL, and the one division needed (pricing a fare in loyalty units) is done on
    integers. See the `money_rules` docs block.
#}

{#- x rounded to the cent, a tie going to the even cent (cashback, conversions). Portable:
    floor / mod / case on DECIMAL, no engine-specific rounding function. -#}
{% macro round_half_even_cents(amount) -%}
    {%- set hundredths = "(abs(" ~ amount ~ ") * 100)" -%}
    {%- set whole = "floor(" ~ hundredths ~ ")" -%}
    cast(
        case when {{ amount }} < 0 then -1 else 1 end
        * (
            {{ whole }}
            + case
                when {{ hundredths }} - {{ whole }} > cast(0.5 as decimal(2, 1)) then 1
                when {{ hundredths }} - {{ whole }} < cast(0.5 as decimal(2, 1)) then 0
                when mod({{ whole }}, 2) = 1 then 1
                else 0
            end
        )
        * cast(0.01 as decimal(3, 2))
        as {{ money_type() }}
    )
{%- endmacro %}

{#- An amount (loyalty units or a fare currency) in USD at a rate, half-even to the cent. -#}
{% macro to_usd(amount, usd_per_unit) -%}
    {{ round_half_even_cents("cast(" ~ amount ~ " as decimal(38, 2)) * " ~ usd_per_unit) }}
{%- endmacro %}

{#- Cashback on a charge: the tenant's rate times the units charged, half-even to the cent. -#}
{% macro cashback_for(charged_amount, cashback_rate) -%}
    {{ round_half_even_cents("cast(" ~ charged_amount ~ " as decimal(38, 2)) * " ~ cashback_rate) }}
{%- endmacro %}

{#- The smallest step a loyalty amount moves in, in hundredths of a unit: a whole unit for
    stars and points (0 decimals), a cent for coins (2 decimals). -#}
{% macro minor_unit_hundredths(currency_decimals) -%}
    case {{ currency_decimals }} when 0 then 100 when 1 then 10 else 1 end
{%- endmacro %}

{% macro minor_unit(currency_decimals) -%}
    cast(({{ minor_unit_hundredths(currency_decimals) }}) * cast(0.01 as decimal(3, 2)) as {{ money_type() }})
{%- endmacro %}

{#- The correct charge U for a USD fare: U covers the fare and one minor unit less would not,
    i.e. the fare priced in loyalty units rounded UP to a whole unit (stars, points) or to
    the cent (coins). Compared without division. -#}
{% macro is_rounded_up_charge(units, usd_per_unit, usd_amount, currency_decimals) -%}
    (
        {{ units }} * {{ usd_per_unit }} >= {{ usd_amount }}
        and ({{ units }} - {{ minor_unit(currency_decimals) }}) * {{ usd_per_unit }} < {{ usd_amount }}
    )
{%- endmacro %}

{#- That charge itself, for reporting what the ledger should hold: ceil(fare / (rate * minor
    unit)) minor units, computed on exact integers (cents and rate * 10^8). -#}
{% macro loyalty_units_for_usd(usd_amount, usd_per_unit, currency_decimals) -%}
    {%- set step = "(" ~ minor_unit_hundredths(currency_decimals) ~ ")" -%}
    {%- set divisor = "(cast(" ~ usd_per_unit ~ " * 100000000 as bigint) * " ~ step ~ ")" -%}
    {%- set dividend = "cast(" ~ usd_amount ~ " * 100 as bigint) * 100000000 + " ~ divisor ~ " - 1" -%}
    cast(
        cast({{ integer_divide(dividend, divisor) }} * {{ step }} as {{ money_type() }})
        * cast(0.01 as decimal(3, 2))
        as {{ money_type() }}
    )
{%- endmacro %}

{#- Quotient of two non-negative integers, rounded down. -#}
{% macro integer_divide(dividend, divisor) -%}
    {{ return(adapter.dispatch('integer_divide')(dividend, divisor)) }}
{%- endmacro %}

{% macro default__integer_divide(dividend, divisor) -%}
    floor(({{ dividend }}) / ({{ divisor }}))
{%- endmacro %}

{#- Integer division on both engines: floor of a DOUBLE quotient is wrong above 2^53. -#}

{% macro duckdb__integer_divide(dividend, divisor) -%}
    (({{ dividend }}) // ({{ divisor }}))
{%- endmacro %}

{% macro spark__integer_divide(dividend, divisor) -%}
    (({{ dividend }}) div ({{ divisor }}))
{%- endmacro %}
