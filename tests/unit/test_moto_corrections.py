"""The lab's corrections of moto are installed for a run and removed after, and only within the moto releases they
were verified with (sqs_fleet.lab.moto_corrections)."""

from __future__ import annotations

from moto.awslambda import urls as lambda_urls
from moto.ec2.models.launch_templates import LaunchTemplateBackend
from moto.sqs.models import SQSBackend

from sqs_fleet.lab import moto_corrections
from sqs_fleet.lab.moto_corrections import installed, outside_window
from sqs_fleet.lab.moto_corrections.patch import Patch

ACCOUNT_SETTINGS = r"{0}/(?P<api_version>[^/]+)/account-settings/?$"


def test_corrections_apply_inside_the_block_and_are_removed_after() -> None:
    receive = SQSBackend.receive_message
    assert not hasattr(LaunchTemplateBackend, "delete_launch_template_versions")
    with installed():
        assert SQSBackend.receive_message is not receive
        assert hasattr(LaunchTemplateBackend, "delete_launch_template_versions")
        assert ACCOUNT_SETTINGS in lambda_urls.url_paths
    assert SQSBackend.receive_message is receive
    assert not hasattr(LaunchTemplateBackend, "delete_launch_template_versions")
    assert ACCOUNT_SETTINGS not in lambda_urls.url_paths


def test_a_failed_block_removes_them_too() -> None:
    receive = SQSBackend.receive_message
    try:
        with installed():
            raise RuntimeError("the server stopped")
    except RuntimeError:
        pass
    assert SQSBackend.receive_message is receive


def test_a_patch_restores_an_inherited_attribute_by_removing_its_own() -> None:
    class Base:
        def name(self) -> str:
            return "base"

    class Child(Base):
        pass

    patch = Patch(Child, "name", lambda self: "patched")
    patch.apply()
    assert Child().name() == "patched"
    patch.remove()
    assert "name" not in Child.__dict__ and Child().name() == "base"


def test_a_moto_outside_the_window_is_named(monkeypatch) -> None:
    assert outside_window() is None  # the pinned release
    monkeypatch.setattr(moto_corrections, "version", lambda _name: "5.3.0")
    assert outside_window() == ("moto 5.3.0 is not a release the lab's corrections were verified with "
                                "(5.2.5..5.2.5): the emulator runs plain moto, which accepts what AWS refuses "
                                "(docs/emulator.md)")
