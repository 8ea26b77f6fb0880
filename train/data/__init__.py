"""The ICLUS-DB-style data layer: on-disk layout (:mod:`train.data.layout`), LabelMe masks
(:mod:`train.data.labelme`), splits (:mod:`train.data.splits`), torch datasets
(:mod:`train.data.torch_datasets`, the only module here that imports torch) and the synthetic
dataset generator (:mod:`train.data.synthetic`). ``python -m train.data check DIR`` lists every
problem of a dataset folder."""
