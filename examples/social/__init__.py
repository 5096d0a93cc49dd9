"""The seed talk's small social network: users, posts, mentions, e-mails and statistics.

Run it with ``python -m examples.social`` (see README.md next to this file).
"""
