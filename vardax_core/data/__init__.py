"""Datasets in Zarr through xarray: schemas, chunked resumable writers, validated readers."""

from ._analyses import AnalysesWriter as AnalysesWriter
from ._analyses import open_analyses as open_analyses
from ._batches import iter_minibatches as iter_minibatches
from ._batches import split_events as split_events
from ._catalogue import open_catalogue as open_catalogue
from ._catalogue import write_catalogue as write_catalogue
from ._hash import dataset_hash as dataset_hash
from ._lock import StoreBusy as StoreBusy
from ._lock import store_lock as store_lock
from ._pairs import layout_sizes as layout_sizes
from ._pairs import open_pairs as open_pairs
from ._pairs import problem_attrs as problem_attrs
from ._pairs import time_coord as time_coord
from ._pairs import write_pairs as write_pairs
from ._schema import ANALYSES as ANALYSES
from ._schema import CATALOGUE as CATALOGUE
from ._schema import PAIRS as PAIRS
from ._schema import SCHEMA_VERSION as SCHEMA_VERSION
from ._schema import DatasetSchema as DatasetSchema
from ._schema import VariableSpec as VariableSpec
from ._schema import axis_dims as axis_dims
from ._schema import resolve_dims as resolve_dims
from ._store import ChunkedStore as ChunkedStore
from ._store import open_store as open_store
from ._store import store_exists as store_exists
