"""Shots and chunks of one video on many workers, with Ray: chunks.py plans the work as plain data,
worker.py is the actor that stylises a chunk, ray_run.py the driver that hands chunks out and keeps
what comes back in the usual work folder. Ray is imported only by ray_run.py, and only when asked for."""
