"""What one evaluation run measures (``EvaluationConfig``) and the editors it uses by default."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from magec import validation
from magec.errors import MagecError
from magec.evaluation.edit_plans import EditPlanConfig
from magec.evaluation.realism import RealismConfig
from magec.inversion.config import MAGEC_EDITORS, METHODS
from magec.latent.kinds import editor_kinds

if TYPE_CHECKING:
    from magec.pipeline import Pipeline


@dataclass(frozen=True)
class EvaluationConfig:
    """What one evaluation measures. Defaults follow the paper: the three methods of Tables 1-3,
    about 20 random edits per image, realism with k = 3, ECS on InterfaceGAN and GANSpace."""

    methods: tuple[str, ...] = ("magec", "no-magec", "im2stylegan++")
    #: None: the paper's three editors plus SeFa and StyleFlow when the pack has them (``default_editors``).
    editors: tuple[str, ...] | None = None
    plan: EditPlanConfig = EditPlanConfig()
    realism: RealismConfig = RealismConfig()
    ecs: bool = True
    #: Generator samples forming the realism reference set when no real reference images are given.
    reference_size: int = 1000
    #: Images inverted together in one call (a resumed run keeps the same chunks, so results repeat).
    batch_size: int = 1
    seed: int = 0
    #: Keep PNGs of projections and ECS edits (needed for the report's best/worst ECS examples).
    save_images: bool = True
    #: Scale of every inversion phase's step count (1 = the paper's schedules; smaller for quick looks).
    steps_scale: float = 1.0
    #: Replace lambda_MAGEC (paper: 3e-4) in the magec method, for sensitivity studies; None keeps the paper's.
    lambda_magec: float | None = None
    #: Restrict the MAGEC loss to these attributes of the pack; None = all of them.
    attributes: tuple[str, ...] | None = None
    #: Editor whose edits the magec method's MAGEC term uses (the paper: interfacegan; or styleflow).
    magec_editor: str = "interfacegan"
    #: Record dlib's identity distance input -> projection and input -> every edit (``magec.evaluation.identity``).
    identity: bool = True
    #: Faces cut from photos: paste the projection and every random edit back into the photo, in each paste mode,
    #: and measure sharpness, closeness to the photo and identity there (``magec.evaluation.paste_back``).
    paste_back: bool = False

    def __post_init__(self) -> None:
        if not self.methods:
            raise MagecError("evaluation needs at least one method")
        for method in self.methods:
            validation.choice("--methods", method, METHODS)
        validation.integer("--edits-per-editor", self.plan.edits_per_editor, 0)
        validation.integer("--reference-size", self.reference_size, 1)
        validation.integer("--batch-size", self.batch_size, 1)
        validation.integer("--seed", self.seed, 0)
        validation.positive("--steps-scale", self.steps_scale)
        if self.lambda_magec is not None:
            validation.non_negative("--lambda-magec", self.lambda_magec)
        validation.choice("--magec-editor", self.magec_editor, MAGEC_EDITORS)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["lambda_magec"] is None:  # runs made before this option existed stay resumable
            del d["lambda_magec"]
        if d["attributes"] is None:
            del d["attributes"]
        else:
            d["attributes"] = list(self.attributes)
        if d["magec_editor"] == "interfacegan":  # likewise
            del d["magec_editor"]
        if not d["identity"]:  # runs made before the identity columns existed stay resumable (with --no-identity)
            del d["identity"]
        if not d["paste_back"]:  # likewise for runs made before --paste-back
            del d["paste_back"]
        d["methods"] = list(self.methods)
        d["editors"] = list(self.editors) if self.editors is not None else None
        d["plan"]["interpolation_t"] = list(self.plan.interpolation_t)
        return d


#: The paper's editors (always evaluated by default) and the ones added when the pack has them.
PAPER_EDITORS = editor_kinds(paper=True)
OPTIONAL_EDITORS = editor_kinds(paper=False)


def default_editors(pipeline: Pipeline) -> tuple[str, ...]:
    """The paper's InterfaceGAN, GANSpace and interpolation, then SeFa and StyleFlow if the pipeline has them."""
    return PAPER_EDITORS + tuple(n for n in OPTIONAL_EDITORS if n in pipeline.editors)


def with_default_editors(config: EvaluationConfig, pipeline: Pipeline) -> EvaluationConfig:
    """``config`` with its editors resolved (so the run metadata names them and resumes compare them)."""
    return config if config.editors is not None else replace(config, editors=default_editors(pipeline))
