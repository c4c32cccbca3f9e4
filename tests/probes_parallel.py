"""Bad-input probes of llmbook.parallel (collected by tests/test_bad_input.py).

The workers are probed with a bad argument that they check before any collective, so no
process group is needed.
"""

import torch

from llmbook import parallel


def _ops():
    return parallel.pipeline_schedule(2, 2)


PROBES = [
    (
        "llmbook.parallel.run_workers",
        "world_size",
        lambda t: parallel.run_workers(parallel.ddp_train, 0),
    ),
    ("llmbook.parallel.toy_model", "seed", lambda t: parallel.toy_model(-1)),
    ("llmbook.parallel.toy_batch", "batch", lambda t: parallel.toy_batch(0, 0)),
    ("llmbook.parallel.flat_parameters", "model", lambda t: parallel.flat_parameters("m")),
    ("llmbook.parallel.reference_train", "steps", lambda t: parallel.reference_train(0)),
    ("llmbook.parallel.ddp_train", "batch", lambda t: parallel.ddp_train(0, 3, 1, batch=8)),
    ("llmbook.parallel.fsdp_train", "batch", lambda t: parallel.fsdp_train(0, 3, 1, batch=8)),
    (
        "llmbook.parallel.tensor_parallel_mlp",
        "d_ff",
        lambda t: parallel.tensor_parallel_mlp(0, 3, 8, 10),
    ),
    ("llmbook.parallel.allreduce_times", "sizes", lambda t: parallel.allreduce_times(0, 2, [0])),
    ("llmbook.parallel.chapter_demos", "batch", lambda t: parallel.chapter_demos(0, 3, 1, [8])),
    ("llmbook.parallel.pipeline_schedule", "n_micro", lambda t: parallel.pipeline_schedule(2, 0)),
    ("llmbook.parallel.bubble_fraction", "ops", lambda t: parallel.bubble_fraction([1])),
    ("llmbook.parallel.peak_in_flight", "ops", lambda t: parallel.peak_in_flight([])),
    ("llmbook.parallel.PipelineOp", "kind", lambda t: parallel.PipelineOp(0, 0, "X", 0, 1)),
    ("llmbook.parallel.saved_tensor_bytes", "fn", lambda t: parallel.saved_tensor_bytes(3)),
    (
        "llmbook.parallel.forward_checkpointed",
        "segment",
        lambda t: parallel.forward_checkpointed(
            parallel.toy_model(), *parallel.toy_batch(0, 1), segment=9
        ),
    ),
]
NO_ARGUMENTS = {"llmbook.parallel.free_port"}
_ = torch
