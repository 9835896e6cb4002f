"""The admin API under ``/_fakests/``: sandboxes, directories, scenarios, journals, clocks and keys over
REST, its OpenAPI document, the dashboard page, and token minting with chosen flaws. It is how a
remote test, a CI job or a person at a browser drives a running fakests.
"""
