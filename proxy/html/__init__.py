"""HTML: the streaming gate over lol-html (only `gate.py` imports the binding), its
codings, and the runtime guard's rule table."""
