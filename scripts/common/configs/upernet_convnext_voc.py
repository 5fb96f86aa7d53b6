# UPerNet + ConvNeXt (mmpretrain.ConvNeXt) on VOC: the model and optimizer of MMSeg's
# convnext-tiny_upernet_8xb2-amp-160k_ade20k-512x512.py (AdamW with stage-wise
# learning-rate decay, linear warm-up then poly decay).
_base_ = ['./mmseg/_base_/models/upernet_convnext.py', './study_voc.py']
model = dict(
    backbone=dict(
        type='mmpretrain.ConvNeXt',
        arch='tiny',
        out_indices=[0, 1, 2, 3],
        drop_path_rate=0.4,
        layer_scale_init_value=1.0,
        gap_before_final_norm=False),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg={
        'decay_rate': 0.9,
        'decay_type': 'stage_wise',
        'num_layers': 6
    },
    constructor='LearningRateDecayOptimizerConstructor')
