"""Demonstration datasets: robomimic-compatible HDF5 files (``hdf5``) and LeRobot v3.0 export (``lerobot``)."""

from mu0sim.datasets.hdf5 import (DatasetError, DatasetWriter, EpisodeRecord, env_args_for, iter_episodes,
                                  make_env_from_dataset, open_dataset, read_collection,
                                  read_env_args)

__all__ = ["DatasetError", "DatasetWriter", "EpisodeRecord", "env_args_for", "iter_episodes", "make_env_from_dataset",
           "open_dataset", "read_collection", "read_env_args"]
