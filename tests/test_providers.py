"""The messaging apps' registry (issue 14): every kind of channel is one module of
channels/, and what the rest of the server shows of the apps comes from it."""
from __future__ import annotations

import dataclasses

from channels import providers
from channels.webhooks import routes
from models import ChannelKind
from schema.inputs import InstallChannelInput


def test_every_kind_of_channel_has_its_app():
    assert [app.kind for app in providers()] == list(ChannelKind)


def test_install_channel_input_has_one_config_field_per_app():
    fields = [field.name for field in dataclasses.fields(InstallChannelInput)]
    assert fields == ["kind", "name", *(app.input_field for app in providers())]


def test_each_apps_webhook_path_is_one_of_its_routes():
    paths = {route.path for route in routes}
    for app in providers():
        if app.webhook_path is not None:
            assert app.webhook_path.format("{channel_id}") in paths
            assert {route.path for route in app.routes()} <= paths
