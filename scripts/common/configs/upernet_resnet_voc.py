# UPerNet + ResNet on VOC: MMSeg's upernet_r50_4xb4-40k_voc12aug-512x512.py, by epochs.
# SGD as MMSeg's schedule files set it; lr and PolyLR's end are set per run.
_base_ = ['./mmseg/_base_/models/upernet_r50.py', './study_voc.py']
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005),
    clip_grad=None)
