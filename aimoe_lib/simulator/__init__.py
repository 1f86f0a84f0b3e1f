"""Event-driven pipelined inference on the 3D AIMC chip (the book's chapter 4
explains every number).

Data flow: ``ModelSpec`` + ``ChipConfig`` + ``Mapping`` + :class:`~aimoe_lib.simulator.program.Workload` ->
:func:`~aimoe_lib.simulator.program.build_program` (a token's operation graph as flat arrays, :class:`~aimoe_lib.simulator.program.Program`)
-> :func:`~aimoe_lib.simulator.engine.run_engine` -> :class:`~aimoe_lib.simulator.result.SimResult`, which keeps its workload and program.

Modules, one job each:

- :mod:`~aimoe_lib.simulator.program` -- the workload, its passes (:func:`~aimoe_lib.simulator.program.pass_layout`,
  the one home of tokens per pass and positions) and the token program.
- :mod:`~aimoe_lib.simulator.engine` -- the compiled event loop and :func:`~aimoe_lib.simulator.engine.simulate`;
  its state is bounded by what is in flight (:func:`~aimoe_lib.simulator.engine.engine_state_bytes`).
- :mod:`~aimoe_lib.simulator.engine_v1` -- the previous loop (state per token x operation), kept
  for the benchmark and as a second oracle.
- :mod:`~aimoe_lib.simulator.result` -- :class:`~aimoe_lib.simulator.result.SimResult` and the event-log dtype.
- :mod:`~aimoe_lib.simulator.reference` -- a plain, exact scheduler the tests compare against.
- :mod:`~aimoe_lib.simulator.trace` -- analyses of a recorded run: Gantt rows, the critical path
  of a token, the causes of tile conflicts.
"""

from . import trace
from .engine import EngineInput, EngineOutput, engine_input, run_engine, simulate
from .program import (  # operation flags, resource classes and the program
           F_FIRST,
           F_HEAD,
           F_KV_CONSUMER,
           F_LAST,
           R_DPU,
           R_DRAM,
           R_MHA,
           R_TILES,
           RES_NAMES,
           PassLayout,
           Program,
           Step,
           Workload,
           build_program,
           kv_cache_bytes,
           kv_spill_fraction,
           pass_layout,
)
from .result import LOG_DTYPE, SimResult

__all__ = ["Workload", "SimResult", "Program", "Step", "PassLayout", "pass_layout",
           "build_program", "kv_cache_bytes", "kv_spill_fraction", "simulate", "run_engine",
           "engine_input", "EngineInput", "EngineOutput", "trace", "RES_NAMES", "LOG_DTYPE",
           "R_TILES", "R_DPU", "R_MHA", "R_DRAM", "F_KV_CONSUMER", "F_HEAD", "F_FIRST", "F_LAST"]
