"""The embedded staging ENT: an ASGI app modelled on ODE / Open ENT NG routes, plus Enseigno on its own port.

Shares no code with the scenarios: they meet over HTTP, as with a real staging ENT.
"""
