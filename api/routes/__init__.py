"""Every router of the API, in the order the documentation lists them."""

from . import customers, insights, loyalty, orders, privacy, records, service, system, tokens, webhooks

ROUTERS = (system.router, tokens.router, customers.router, orders.router, insights.router, service.router,
           loyalty.router, privacy.router, records.router, webhooks.router)
