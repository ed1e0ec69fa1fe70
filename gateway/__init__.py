"""The SMS gateway: the command outbox, the four-state handshake, SMPP / GSM-modem / simulated transports."""
