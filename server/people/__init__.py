"""The people who sign in: members and staff with an e-mail and a password (or a one-time
link), their sessions, the mail that reaches them, and the limits on guessing."""
