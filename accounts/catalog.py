"""The model catalog as the apps below the gateway read it.

The catalog is the gateway's (gateway.models: models, aliases, deployments), but keys name models and
the dashboard's pages list them. The gateway provides these reads in its AppConfig.ready(), so accounts
and billing name no gateway module.
"""

from __future__ import annotations

from common.hooks import Provider

# known_models(names) -> the set of `names` that are catalog models or aliases, enabled or not.
known_models = Provider("accounts.catalog.known_models")
# model_choices() -> [(name, label)] of every enabled model and alias with its price, for the key form.
model_choices = Provider("accounts.catalog.model_choices")
# first_chat_model() -> the name of the first enabled chat model, or None.
first_chat_model = Provider("accounts.catalog.first_chat_model")
# model_names() -> every catalog model's name, sorted, for the usage page's filter.
model_names = Provider("accounts.catalog.model_names")
