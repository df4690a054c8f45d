"""Operations layer: tools that drive or report on every stage (pipeline runner, summary).

It sits above data_platform, ml_platform and inference_service and may import all of them;
nothing below imports it.
"""
