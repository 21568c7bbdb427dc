"""The ``pfplan`` command: a thin shell over profiles, simulator and planner.

Each command group lives in its own ``planner/commands_*.py`` module with a
``register(app)`` function; this module only assembles them.
"""

from __future__ import annotations

import typer

from planner import (commands_catalog, commands_memory, commands_plan, commands_profile, commands_search,
                     commands_simulate, commands_topology, commands_validate)
from profiles.cli_support import entry_point

app = typer.Typer(
    name="pfplan",
    help="Plan parallel inference of Diffusion Transformers (PipeFusion and friends). "
         "Add --debug to any command to see tracebacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for module in (commands_catalog, commands_topology, commands_profile, commands_plan, commands_simulate,
               commands_search, commands_validate, commands_memory):
    module.register(app)

main = entry_point(app, "pfplan")

if __name__ == "__main__":
    main()
