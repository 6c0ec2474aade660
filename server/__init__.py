"""Running the inbox: settings, database start-up, the ASGI app and the `inbox` command."""
