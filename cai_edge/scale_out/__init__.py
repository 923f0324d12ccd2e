"""Engines that take cai-edge past one machine: AWS Lambda and its local fan-out (:mod:`.aws`), Slurm
array jobs (:mod:`.slurm`), Dask (:mod:`.dask_engine`), and the merge of their outputs (:mod:`.merge`).

All of them predict with :class:`cai_edge.predictor.Predictor`, write rows with
:mod:`cai_edge.results` and join outputs with :func:`.merge.merge_outputs`."""
