"""Scale-out: one learner and many scorers per pipeline (``streamlearn run --role``).

``all`` (the default) is one process that scores and learns. With roles, *scorers* form the
pipeline's consumer group: they score each batch with the newest published model, write the
outputs, send what is to be learned to the pipeline's learn topic (:mod:`.examples`), commit,
and never learn. The *learner* (one per pipeline, under the pipeline's lock; a standby waits
for it) reads the learn topic, learns each example exactly once, evaluates the scores that
were served, checkpoints, and publishes model versions (:mod:`.publication`) that scorers pick
up between batches.
"""

from __future__ import annotations

ROLES = ("all", "scorer", "learner")
