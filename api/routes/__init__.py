"""Every router of the API, in the order the documentation lists them."""

from . import customers, system, tokens

ROUTERS = (system.router, tokens.router, customers.router)
