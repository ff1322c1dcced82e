"""The operator console on the admin port: a page for people, signed in with the admin token.

``sessions.py`` keeps who is signed in (a session cookie, HttpOnly and SameSite=Strict,
with an expiry) and each session's CSRF token; ``handlers.py`` serves the sign-in page,
the console and signing out; the page itself (``static/``) reads the admin API every
two seconds with the session and acts on it with the CSRF token.
"""
