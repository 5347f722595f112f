"""advrobust.study: experiment grids, resumable and shardable, with tables, figures and a CLI.

A study trains every model of a list on every subset S_1 ⊂ ... ⊂ S_n of a dataset with every
training recipe, evaluates accuracy and robustness (eqs. 4 and 5 of "How training data affect
the accuracy and robustness of neural networks for image classification", ICLR 2019
submission; transfer, label leaking, DeepSec), and writes a tidy table and figures of accuracy
and robustness against training-set size, with confidence intervals and a report
(``write_report``)::

    from advrobust.study import load_preset, run_study
    result = run_study(load_preset("digits"), "study-digits")
    print(result.summary)

The same runs from the shell: ``advrobust study run --preset digits``.
"""

from ._analysis import SUMMARY_COLUMNS as SUMMARY_COLUMNS
from ._analysis import example_key as example_key
from ._analysis import find_turning_points as find_turning_points
from ._analysis import pareto_frontier as pareto_frontier
from ._analysis import scaling_law as scaling_law
from ._analysis import summarize as summarize
from ._config import METRICS as METRICS
from ._config import RECIPE_KINDS as RECIPE_KINDS
from ._config import AttackSpec as AttackSpec
from ._config import ConfigError as ConfigError
from ._config import DataSpec as DataSpec
from ._config import EvalSpec as EvalSpec
from ._config import ModelSpec as ModelSpec
from ._config import RecipeSpec as RecipeSpec
from ._config import StudyConfig as StudyConfig
from ._config import TrainingSpec as TrainingSpec
from ._grid import Cell as Cell
from ._grid import Shard as Shard
from ._grid import enumerate_cells as enumerate_cells
from ._grid import parse_shard as parse_shard
from ._grid import shard_cells as shard_cells
from ._plots import plot_results as plot_results
from ._presets import list_presets as list_presets
from ._presets import load_preset as load_preset
from ._presets import preset_text as preset_text
from ._report import write_report as write_report
from ._results import COLUMNS as COLUMNS
from ._results import build_rows as build_rows
from ._results import example_values as example_values
from ._results import format_summary as format_summary
from ._results import read_example_values as read_example_values
from ._results import read_results as read_results
from ._results import turning_points as turning_points
from ._results import write_example_values as write_example_values
from ._results import write_results as write_results
from ._runner import StudyConfigMismatchError as StudyConfigMismatchError
from ._runner import StudyFolderBusyError as StudyFolderBusyError
from ._runner import StudyResult as StudyResult
from ._runner import evaluation_sample as evaluation_sample
from ._runner import finalize_study as finalize_study
from ._runner import format_timings as format_timings
from ._runner import load_cell_model as load_cell_model
from ._runner import merge_studies as merge_studies
from ._runner import run_study as run_study
from ._tasks import CellEval as CellEval
from ._tasks import EvalTask as EvalTask
from ._tasks import TaskOutput as TaskOutput
from ._tasks import register_task as register_task
from ._tasks import task_names as task_names
from ._tasks import unregister_task as unregister_task

__all__ = [
    "COLUMNS",
    "METRICS",
    "RECIPE_KINDS",
    "SUMMARY_COLUMNS",
    "AttackSpec",
    "Cell",
    "CellEval",
    "ConfigError",
    "DataSpec",
    "EvalSpec",
    "EvalTask",
    "ModelSpec",
    "RecipeSpec",
    "Shard",
    "StudyConfig",
    "StudyConfigMismatchError",
    "StudyFolderBusyError",
    "StudyResult",
    "TaskOutput",
    "TrainingSpec",
    "build_rows",
    "enumerate_cells",
    "evaluation_sample",
    "example_key",
    "example_values",
    "finalize_study",
    "find_turning_points",
    "format_summary",
    "format_timings",
    "list_presets",
    "load_cell_model",
    "load_preset",
    "merge_studies",
    "pareto_frontier",
    "parse_shard",
    "plot_results",
    "preset_text",
    "read_example_values",
    "read_results",
    "register_task",
    "run_study",
    "scaling_law",
    "shard_cells",
    "summarize",
    "task_names",
    "turning_points",
    "unregister_task",
    "write_example_values",
    "write_report",
    "write_results",
]
