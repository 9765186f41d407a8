import pytest

from ltchm.evaluation.learned import LearnedCodec, ModelSpec, parse_model_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runs/l512/model.ckpt", ModelSpec("runs/l512/model.ckpt")),
        ("models:/ltchm@lambda_512", ModelSpec("models:/ltchm@lambda_512")),
        ("mse=runs/l128.ckpt", ModelSpec("runs/l128.ckpt", curve="mse")),
        (
            "ltchm,config=configs/lambda_512.yaml",
            ModelSpec("ltchm", config="configs/lambda_512.yaml"),
        ),
        (
            "ms-ssim=ltchm,config=configs/lambda_512.yaml",
            ModelSpec("ltchm", curve="ms-ssim", config="configs/lambda_512.yaml"),
        ),
        ("runs/a=b/model.ckpt", ModelSpec("runs/a=b/model.ckpt")),
        ("tcm=models:/tcm-lambda512@champion", ModelSpec("models:/tcm-lambda512@champion", "tcm")),
    ],
)
def test_parse_model_spec(text: str, expected: ModelSpec) -> None:
    assert parse_model_spec(text) == expected


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="no source after 'curve='; write LABEL=SOURCE"):
        parse_model_spec("curve=")
    with pytest.raises(ValueError, match="listed twice"):
        LearnedCodec("ltchm", [ModelSpec("a.ckpt"), ModelSpec("a.ckpt")])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("=runs/l128.ckpt", "no label before '='"),
        ("my,model=a.ckpt", "label 'my,model' may hold only"),
        ("tcm=,config=x.yaml", "no source after 'tcm='"),
        ("tcm=tcm,config=", "no file after ',config='"),
    ],
)
def test_malformed_pairs_are_one_line_errors(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says) as info:
        parse_model_spec(text)
    assert "\n" not in str(info.value)


def test_curve_is_a_ladder_of_models() -> None:
    codec = LearnedCodec("ltchm", [ModelSpec("l128.ckpt"), ModelSpec("l512.ckpt")])
    assert codec.ladder() == ["l128.ckpt", "l512.ckpt"]
    assert codec.label == "ltchm (learned)" and not codec.parallel
    assert codec.setting_name == "model"
