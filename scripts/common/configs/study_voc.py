# The study's fixed choices on top of MMSegmentation's VOC dataset and runtime files:
# epochs instead of iterations (EpochBasedTrainLoop, DefaultSampler, checkpoints and
# logs by epoch), resume from the newest checkpoint, TensorBoard beside MMEngine's
# local scalars.  Each model family's file (upernet_<family>_voc.py) adds its model
# and optimizer; each run's config.py sets only what the run chooses.
_base_ = [
    './mmseg/_base_/datasets/pascal_voc12.py',
    './mmseg/_base_/default_runtime.py',
]
train_dataloader = dict(
    # an epoch ends: InfiniteSampler (MMSeg's iteration schedules) never would
    sampler=dict(type='DefaultSampler', shuffle=True))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=30, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=True),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=True, interval=1, max_keep_ckpts=2, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=True)
visualizer = dict(
    vis_backends=[dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
resume = True  # continue from the newest checkpoint in work_dir, if there is one
