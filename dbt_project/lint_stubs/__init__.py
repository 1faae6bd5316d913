"""Stand-ins so sqlfluff can render the models; dbt renders them for real.

sqlfluff's jinja templater (`library_path` in the repository's `.sqlfluff`) makes every
public name of this package a Jinja global while it renders a model. Here are only the names
the models and `macros/` use beyond sqlfluff's own dbt builtins, rendering the SQL they
render on DuckDB. `execute` is false, as while dbt parses a project, so the macros that query
the warehouse return before they reach `run_query`, `graph`, `adapter.quote` or `log`.
"""

import datetime as _dt
from types import SimpleNamespace as _Namespace

from jinja2 import pass_context as _pass_context

execute = False

# Any fixed instant: the models only render it into a timestamp literal.
run_started_at = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)


@_pass_context
def _dispatch(context, macro_name, macro_namespace=None):
    """The project's `duckdb__` implementation of a macro, else its `default__` one."""
    for prefix in ("duckdb__", "default__"):
        macro = context.get(prefix + macro_name)
        if macro is not None:
            return macro
    raise LookupError(f"no duckdb__ or default__ implementation of {macro_name}")


adapter = _Namespace(dispatch=_dispatch)

# The cross-database macros the models call, rendering what they render on DuckDB.
dbt = _Namespace(
    type_string=lambda: "varchar",
    type_int=lambda: "integer",
    type_float=lambda: "double",
    type_boolean=lambda: "boolean",
    string_literal=lambda value: "'" + str(value) + "'",
    date_trunc=lambda datepart, date: f"date_trunc('{datepart}', {date})",
    datediff=lambda first, second, datepart: f"date_diff('{datepart}', {first}, {second})",
    concat=lambda fields: " || ".join(fields),
    hash=lambda field: f"md5(cast({field} as varchar))",
)


def env_var(name, default=None):
    """dbt's env_var, with its default (or the variable's name) standing in for the value."""
    return name if default is None else default
