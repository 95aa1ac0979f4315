"""tensorflow-datasets as a source: the builder (prepared here, downloaded, or one line saying why it cannot be) and
its records for the JPEG pipeline.

A dataset that is neither prepared nor downloadable fails within seconds: before tfds downloads, one request
without retries asks each of the dataset's download hosts for an answer (tfds itself retries with backoff for
about 3 minutes when there is no network, longer where packets are dropped).
"""

import os
import urllib.parse

import jax

from mnet_jax.data.records import Records, jpeg_data, pipeline_options
from mnet_jax.errors import ConfigError

PROBE_TIMEOUT_S = 5  # a download host that answers does so well within this


def tfds_builder(data_config, hint=""):
  """The prepared tfds builder of data_config.name; `hint` ends the one-line error when it cannot be prepared."""
  import tensorflow_datasets as tfds
  data_dir = data_config.data_dir
  if data_dir is not None and not (os.path.isdir(data_dir) and os.access(data_dir, os.R_OK | os.X_OK)):
    raise ConfigError(f"data.data_dir={data_dir!r} is not a readable directory")
  try:
    builder = tfds.builder(data_config.name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError(
        f"data.name={data_config.name!r} is not a tensorflow-datasets dataset; use 'fashion_mnist', "
        "'imagenet2012' or any name from tfds.list_builders()") from None
  features = builder.info.features
  keys = builder.info.supervised_keys
  if not keys or "image" not in features or "label" not in features:
    raise ConfigError(f"data.name={data_config.name!r} is not an image classification dataset (needs 'image' and "
                      "'label' features)")
  if not builder.is_prepared():
    download_and_prepare(builder, data_config, hint)
  return builder


def download_urls(builder, manual_dir):
  """The URLs tfds would download the dataset from: none when its files are the user's to provide (a manual
  download such as imagenet2012's) or all sit in manual_dir already."""
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    return []
  infos = builder.url_infos or {}
  if manual_dir is not None and all(info.filename and os.path.isfile(os.path.join(manual_dir, info.filename))
                                    for info in infos.values()):
    return []
  return list(infos)


def unreachable(urls):
  """'host (reason)' for the first http(s) host of `urls` that does not answer, or None when all answer (any HTTP
  status counts as an answer). One request per host, no retries, PROBE_TIMEOUT_S each."""
  import requests
  hosts = {}
  for url in urls:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("http", "https"):
      hosts.setdefault(parts.netloc, url)
  for host, url in hosts.items():
    try:
      requests.head(url, timeout=PROBE_TIMEOUT_S, allow_redirects=False).close()
    except requests.RequestException as e:
      reason = getattr(e.args[0], "reason", e) if e.args else e  # urllib3's cause: name resolution, refused, ...
      return f"{host} ({type(reason).__name__})"
  return None


def download_and_prepare(builder, data_config, hint=""):
  """Prepares a tfds dataset (download, or the manual files for imagenet2012); one line if that fails, within
  seconds when its download hosts cannot be reached."""
  import tensorflow_datasets as tfds
  manual_dir = data_config.manual_dir
  if manual_dir is not None and not os.path.isdir(manual_dir):
    raise ConfigError(f"data.manual_dir={manual_dir!r} is not a directory")
  where = f"cannot prepare tfds dataset {builder.name!r} in {builder.data_dir_root}: it is not there"
  remedy = (f"build it with `tfds build {builder.name} --data_dir {builder.data_dir_root}` on a machine with a network "
            "and copy the directory here")
  if builder.name == "imagenet2012":
    hint += ("; imagenet2012 needs ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in data.manual_dir "
             f"(now {manual_dir!r}), see docs/training.md")
  if not data_config.download:
    raise ConfigError(f"{where} and data.download is off; {remedy}{hint}")
  host = unreachable(download_urls(builder, manual_dir))
  if host is not None:
    raise ConfigError(f"{where} and its download host {host} cannot be reached; {remedy}{hint}")
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  except Exception as e:  # tfds raises many kinds (network, manual-download assertion, ...): report one line
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(f"{where} and tfds could not prepare it: {reason}{hint}") from None

def split_size(builder, split):
  if split in builder.info.splits:
    return builder.info.splits[split].num_examples
  try:  # a builder without split metadata (e.g. under tfds.testing.mock_data): ask the dataset itself
    size = int(builder.as_dataset(split=split).cardinality())
  except (KeyError, ValueError):
    size = -1
  if size < 0:
    raise ConfigError(f"split {split!r} is not in {builder.name}; it has: {', '.join(builder.info.splits)}")
  return size


def tfds_records(config, hint=""):
  import tensorflow as tf
  import tensorflow_datasets as tfds
  data_config = config.data
  builder = tfds_builder(data_config, hint)
  image_key, label_key = builder.info.supervised_keys
  decoders = {image_key: tfds.decode.SkipDecoding()}

  def read(split, num_examples, shuffle_seed=None):
    training = shuffle_seed is not None
    process_split = tfds.even_splits(f"{split}[:{num_examples}]", jax.process_count(), drop_remainder=training)
    read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, options=pipeline_options())
    ds = builder.as_dataset(split=process_split[jax.process_index()], shuffle_files=training, decoders=decoders,
                            read_config=read_config)
    # The slice above already limits the examples; take() makes sure of it where slicing is not honoured.
    share = num_examples // jax.process_count() if training else -(-num_examples // jax.process_count())
    return ds.take(share).map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))

  return Records(data_config.name, builder.info.features[label_key].num_classes,
                 split_size(builder, data_config.train_split), split_size(builder, data_config.eval_split), read)


def tfds_data(config, eval_only, hint=""):
  return jpeg_data(config, eval_only, tfds_records(config, hint))
