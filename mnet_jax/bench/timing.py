"""The one clock of the benchmarks: wall and CPU seconds of some calls, and images/s of a stream of batches."""

import collections
import time

Timing = collections.namedtuple("Timing", "seconds cpu_seconds")  # wall clock; CPU time of this process
PAUSE_SECONDS = 0.05  # lets the other framework's idle threads stop spinning before a timing starts


def timed(run, calls=1, pause=PAUSE_SECONDS):
  """Timing of `calls` calls of run() (which must block until its work is done), after `pause` seconds. The CPU
  seconds count this process alone, whatever else the machine runs meanwhile."""
  time.sleep(pause)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(calls):
    run()
  return Timing(time.perf_counter() - start, time.process_time() - cpu_start)


def batches_rate(batches, batch, num_batches, warmup=1):
  """(img/s, img per CPU-second of this process) of `num_batches` batches of `batch` images drawn from the
  iterator `batches`, after `warmup` batches (which fill its buffers and threads)."""
  for _ in range(warmup):
    next(batches)
  # No pause: a prefetching pipeline would fill its buffer meanwhile and look faster.
  timing = timed(lambda: next(batches), num_batches, pause=0)
  return batch * num_batches / timing.seconds, batch * num_batches / max(timing.cpu_seconds, 1e-9)
