"""moto's server (`moto_server`) with the one correction the stack needs from it, so that the emulator behaves
as AWS does: moto 5.2's CreateLaunchTemplateVersion keeps the new version's UserData as the raw base64 text,
where CreateLaunchTemplate decodes it, and any later launch from that version (SetDesiredCapacity with
$Latest) fails inside moto with an AssertionError. A stack whose user-data changed (a new node setting, a
new pinned commit) could not scale on the emulator after its next site.yml.

    python -m sqs_fleet.lab.moto_server -H 127.0.0.1 -p 4566      # what sqs_fleet.lab.emulator runs
"""

from __future__ import annotations

import sys
from typing import Any

from moto.ec2.models.launch_templates import LaunchTemplate
from moto.ec2.utils import parse_user_data
from moto.server import main

_create_version = LaunchTemplate.create_version


def create_version(self: LaunchTemplate, data: dict[str, Any], description: str) -> Any:
    if isinstance(data.get("UserData"), (str, bytes)):
        data = {**data, "UserData": parse_user_data(data["UserData"])}
    return _create_version(self, data, description)


LaunchTemplate.create_version = create_version  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
