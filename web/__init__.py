"""The web shell: REST API, operator console and subscriber portal. Handlers parse, call one service, render."""
