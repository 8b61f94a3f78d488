"""The channels: SMTP, IMAP, the Twilio webhook and HTTP, and storing what arrives."""
