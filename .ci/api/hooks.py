"""Schemathesis hooks for .ci/api-checks: the demo data put where a request
needs data that exists, and idempotency keys that each name one request.

Checks are untouched; these only make generated requests meaningful:
- A partner activation is valid only for a user and an offer that exist,
  with the offer's price as `amount`; the fuzzer invents ids, so wherever it
  drew a well-formed id (or a positive amount) the demo user, the demo offer
  (or its price) is sent instead. A malformed value is left as drawn, so
  negative cases stay negative. The same goes, for every other drawn id, for
  `offer_id` on half of the requests (the other half keeps exercising 404).
- A gift is valid only to another active user, and only without
  `auto_renew` (the recipient chooses that); a well-formed `recipient` is
  made the demo user's neighbour `demo2`, and `auto_renew` is dropped from
  gifts. A malformed username is left as drawn.
- The contract answers 422 `idempotency_key_reused` to one key sent with two
  different bodies (tests/tests/suite/activation.rs proves it); the fuzzer
  draws keys from a small space and reuses them across bodies and
  operations, so a well-formed key is made that request's own by a suffix
  derived from the operation and the body.
"""

import hashlib
import json
import os
import re
from collections.abc import MutableMapping

import schemathesis

UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
KEY = re.compile(r"^[!-~]{1,255}$")

USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")
RECIPIENT = "demo2"

USER = os.environ["DEMO_USER_ID"]
OFFER = os.environ["DEMO_OFFER_ID"]
PRICE = int(os.environ["DEMO_OFFER_PRICE"])


def _is_id(value):
    return isinstance(value, str) and UUID.match(value) is not None


def _digest(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation.definition.raw.get("operationId")
    body = case.body if isinstance(case.body, MutableMapping) else None
    if operation == "partner_activate_offer" and body is not None:
        if _is_id(body.get("user_id")):
            body["user_id"] = USER
        if _is_id(body.get("offer_id")):
            body["offer_id"] = OFFER
        amount = body.get("amount")
        # JSON Schema counts 1500.0 as an integer too.
        whole = isinstance(amount, int) or (isinstance(amount, float) and amount.is_integer())
        if whole and not isinstance(amount, bool) and amount >= 1:
            body["amount"] = PRICE
    elif body is not None and _is_id(body.get("offer_id")) and int(_digest(body["offer_id"])[:2], 16) % 2 == 0:
        body["offer_id"] = OFFER
    if operation == "activate_offer" and body is not None and "recipient" in body:
        recipient = body["recipient"]
        if isinstance(recipient, str) and USERNAME.match(recipient):
            body["recipient"] = RECIPIENT
            body.pop("auto_renew", None)
    path = case.path_parameters if isinstance(case.path_parameters, MutableMapping) else None
    if path is not None and _is_id(path.get("offer_id")) and int(_digest(path["offer_id"])[:2], 16) % 2 == 0:
        path["offer_id"] = OFFER
    headers = case.headers if isinstance(case.headers, MutableMapping) else None
    if headers is not None:
        for name in [n for n in headers if n.lower() == "idempotency-key"]:
            key = headers[name]
            if isinstance(key, str) and KEY.match(key):
                headers[name] = (key[:200] + "." + _digest(operation, case.body)[:16])
