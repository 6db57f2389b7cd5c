"""A tiny order service: the program `make demo` traces.

Every few milliseconds a batch of orders arrives as JSON. Each order is validated, then priced:
line items may be bundles of other items (priced recursively, with a bundle discount), loyal
customers get a discount, and tax is added. Runs for argv[1] seconds (default 30) or until killed.

    /usr/bin/python3.11 examples/app.py [seconds]
"""
import json
import os
import sys
import time

CATALOG = {"tea": 450, "mug": 1200, "scone": 325, "jam": 575, "spoon": 150}

# A bundle is priced from its parts, which may be bundles themselves.
BUNDLES = {
    "breakfast": [("tea", 2), ("scone", 2), ("jam", 1)],
    "gift-box": [("breakfast", 1), ("mug", 2), ("spoon", 2)],
}
BUNDLE_DISCOUNT = 0.9
LOYAL_CUSTOMERS = {"ada", "grace"}
TAX_RATE = 0.2

BATCHES = [
    '[{"id": 1, "customer": "ada", "items": [{"sku": "gift-box", "qty": 1}, {"sku": "tea", "qty": 3}]},'
    ' {"id": 2, "customer": "linus", "items": [{"sku": "breakfast", "qty": 2}]}]',
    '[{"id": 3, "customer": "grace", "items": [{"sku": "mug", "qty": 1}, {"sku": "breakfast", "qty": 1}]},'
    ' {"id": 4, "customer": "ken", "items": [{"sku": "teapot", "qty": 1}]},'
    ' {"id": 5, "customer": "barbara", "items": [{"sku": "scone", "qty": 6}]}]',
]


class InvalidOrder(ValueError):
    pass


def parse_orders(raw):
    return json.loads(raw)


def validate(order):
    if not order.get("items"):
        raise InvalidOrder(f"order {order['id']} has no items")
    for item in order["items"]:
        check_item(order["id"], item)


def check_item(order_id, item):
    if item["sku"] not in CATALOG and item["sku"] not in BUNDLES:
        raise InvalidOrder(f"order {order_id}: unknown sku {item['sku']!r}")
    if item["qty"] <= 0:
        raise InvalidOrder(f"order {order_id}: quantity {item['qty']}")


def unit_price(sku):
    """Cents for one unit; bundles are the discounted sum of their parts (recursively)."""
    if sku in CATALOG:
        return CATALOG[sku]
    parts = 0
    for part, qty in BUNDLES[sku]:
        parts += unit_price(part) * qty
    return round(parts * BUNDLE_DISCOUNT)


def line_total(item):
    return unit_price(item["sku"]) * item["qty"]


def apply_discount(customer, subtotal):
    return round(subtotal * 0.95) if customer in LOYAL_CUSTOMERS else subtotal


def add_tax(amount):
    return round(amount * (1 + TAX_RATE))


def price_order(order):
    subtotal = sum(line_total(item) for item in order["items"])
    return add_tax(apply_discount(order["customer"], subtotal))


def handle_batch(raw):
    accepted, rejected, revenue = 0, 0, 0
    for order in parse_orders(raw):
        try:
            validate(order)
        except InvalidOrder:
            rejected += 1
            continue
        revenue += price_order(order)
        accepted += 1
    return accepted, rejected, revenue


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    deadline = time.monotonic() + seconds
    print(f"order service running (pid {os.getpid()})", flush=True)
    batches = revenue = 0
    while time.monotonic() < deadline:
        _, _, cents = handle_batch(BATCHES[batches % len(BATCHES)])
        revenue += cents
        batches += 1
        time.sleep(0.005)
    print(f"{batches} batches, revenue {revenue / 100:.2f}", flush=True)


if __name__ == "__main__":
    main()
