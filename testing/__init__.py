"""Setup shared by the tests and the benchmarks: stand-ins on free ports and the environment
pointing at them, the booking API as a process, a landing zone written from a history, dbt
builds and a throwaway PostgreSQL. Never imported by production code."""
