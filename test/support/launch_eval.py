"""Evaluate the package's launch files without ROS 2 `launch` (it is on no registry here).

Stub modules for `launch`, `launch.actions`, `launch.substitutions`, `launch.conditions`,
`launch.launch_description_sources`, `launch_ros.actions`, `launch_ros.substitutions` and
`launch_ros.parameter_descriptions` are put into ``sys.modules`` while a launch file is imported and
its description is *visited* the way LaunchService would: arguments declared with defaults,
substitutions performed, conditions evaluated, includes of this package's launch files followed
(``FindPackageShare('clustvit_ros')`` resolves to the source tree), group scoping and forwarding,
opaque functions called. The result lists the concrete node processes (package, executable, name,
namespace, remappings, parameters), other processes, environment changes and includes of other
packages' launch files (recorded, not followed). Only the launch API the package uses is modelled,
and anything else fails loudly, so a launch file using something new cannot pass by accident.
"""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
LAUNCH_DIR = REPO / "launch"
PACKAGE = "clustvit_ros"
FOREIGN_SHARE = Path("/opt/ros/share")  # where other packages' share folders are pretended to be


class LaunchEvalError(AssertionError):
    pass


# ---- substitutions ------------------------------------------------------------------------------

class Substitution:
    def perform(self, context) -> str:
        raise NotImplementedError


def perform(value, context) -> str:
    """Perform a 'SomeSubstitutionsType': a str, a substitution or a list of them (concatenated)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Substitution):
        return value.perform(context)
    if isinstance(value, (list, tuple)):
        return "".join(perform(v, context) for v in value)
    raise LaunchEvalError(f"not a substitution: {value!r}")


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name, default=None):
        self.name, self.default = variable_name, default

    def perform(self, context) -> str:
        name = perform(self.name, context)
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if self.default is not None:
            return perform(self.default, context)
        raise LaunchEvalError(f"launch configuration {name!r} is not set")


class TextSubstitution(Substitution):
    def __init__(self, *, text=""):
        self.text = text

    def perform(self, context) -> str:
        return self.text


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions):
        self.parts = substitutions

    def perform(self, context) -> str:
        return str(Path(*[perform(p, context) for p in self.parts]))


class PythonExpression(Substitution):
    def __init__(self, expression):
        self.expression = expression

    def perform(self, context) -> str:
        return str(eval(perform(self.expression, context), {}))  # what launch itself does


class FindPackageShare(Substitution):
    def __init__(self, package):
        self.package = package

    def perform(self, context) -> str:
        package = perform(self.package, context)
        return str(REPO if package == PACKAGE else FOREIGN_SHARE / package)


class ParameterValue:
    def __init__(self, value, *, value_type=None):
        self.value, self.value_type = value, value_type

    def evaluate(self, context):
        text = perform(self.value, context)
        if self.value_type is None:
            return _yaml_value(text)
        return self.value_type(text)


def _yaml_value(text: str):
    """launch_ros's typing of a substituted parameter value: YAML scalars, else the string."""
    import yaml

    value = yaml.safe_load(text) if text else ""
    return value if isinstance(value, (bool, int, float, str, list)) else text


# ---- conditions ---------------------------------------------------------------------------------

def _truth(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise LaunchEvalError(f"invalid condition expression {text!r} (launch accepts true/false/1/0)")


class IfCondition:
    def __init__(self, predicate_expression):
        self.expression = predicate_expression

    def evaluate(self, context) -> bool:
        return _truth(perform(self.expression, context))


class UnlessCondition(IfCondition):
    def evaluate(self, context) -> bool:
        return not super().evaluate(context)


# ---- actions ------------------------------------------------------------------------------------

class Action:
    def __init__(self, condition=None):
        self.condition = condition


class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities or [])

    def add_action(self, action):
        self.entities.append(action)


class DeclareLaunchArgument(Action):
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        super().__init__(kwargs.pop("condition", None))
        if kwargs:
            raise LaunchEvalError(f"DeclareLaunchArgument: unsupported arguments {sorted(kwargs)}")
        self.name, self.default_value, self.description, self.choices = name, default_value, description, choices


class SetEnvironmentVariable(Action):
    def __init__(self, name, value, *, condition=None):
        super().__init__(condition)
        self.name, self.value = name, value


class PythonLaunchDescriptionSource:
    def __init__(self, launch_file_path):
        self.path = launch_file_path


class IncludeLaunchDescription(Action):
    def __init__(self, launch_description_source, *, launch_arguments=None, condition=None):
        super().__init__(condition)
        self.source = launch_description_source
        self.launch_arguments = list(launch_arguments or [])


class GroupAction(Action):
    def __init__(self, actions, *, condition=None, scoped=True, forwarding=True, launch_configurations=None):
        super().__init__(condition)
        self.actions, self.scoped, self.forwarding = list(actions), scoped, forwarding
        self.launch_configurations = dict(launch_configurations or {})


class OpaqueFunction(Action):
    def __init__(self, *, function, args=None, kwargs=None, condition=None):
        super().__init__(condition)
        self.function, self.args, self.kwargs = function, list(args or []), dict(kwargs or {})


class ExecuteProcess(Action):
    def __init__(self, *, cmd, condition=None, **kwargs):
        super().__init__(condition)
        self.cmd, self.kwargs = cmd, kwargs


class Node(Action):
    KNOWN = {"package", "executable", "name", "namespace", "parameters", "remappings", "arguments",
             "ros_arguments", "output", "emulate_tty", "respawn", "respawn_delay", "additional_env"}

    def __init__(self, *, condition=None, **kwargs):
        super().__init__(condition)
        unknown = set(kwargs) - self.KNOWN
        if unknown:
            raise LaunchEvalError(f"Node: arguments this evaluator does not model: {sorted(unknown)}")
        self.kwargs = kwargs


class PushRosNamespace(Action):
    def __init__(self, namespace, *, condition=None):
        super().__init__(condition)
        self.namespace = namespace


# ---- evaluation ---------------------------------------------------------------------------------

@dataclass
class Context:
    launch_configurations: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    ros_namespace: str = ""
    initial_environment: dict = field(default_factory=dict)  # what ResetEnvironment goes back to

    def copy(self) -> Context:
        return Context(dict(self.launch_configurations), dict(self.environment), self.ros_namespace,
                       self.initial_environment)


@dataclass
class NodeSpec:
    """One node process as launch_ros would start it."""

    package: str
    executable: str
    name: str | None
    namespace: str
    remappings: list[tuple[str, str]]
    parameters: list  # Path (a params file) or dict (launch_ros writes it to a temporary file)
    arguments: list[str]
    environment: dict
    source: str  # the launch file that created it

    @property
    def fqn(self) -> str:
        return (self.namespace.rstrip("/") + "/" + (self.name or self.executable)).replace("//", "/")

    def remap(self, name: str) -> str | None:
        return dict(self.remappings).get(name)

    def effective_parameters(self) -> dict:
        """Parameters this node would get, files then dicts in order, as rcl applies them."""
        from rclpy.parameter import parameter_dict_from_yaml_file, parameter_value_to_python

        values: dict = {}
        for entry in self.parameters:
            if isinstance(entry, Path):
                msgs = parameter_dict_from_yaml_file(str(entry), use_wildcard=True, target_nodes=[self.fqn])
                values.update({k: parameter_value_to_python(v.value) for k, v in msgs.items()})
            else:
                values.update(entry)
        return values


@dataclass
class Launched:
    nodes: list[NodeSpec] = field(default_factory=list)
    processes: list[list[str]] = field(default_factory=list)
    # other packages' launch files: (share-relative path, launch configurations, environment)
    foreign_includes: list[tuple[str, dict, dict]] = field(default_factory=list)
    declared: dict = field(default_factory=dict)  # argument name -> DeclareLaunchArgument
    environment: dict = field(default_factory=dict)  # environment at the end of the top level
    files: list[str] = field(default_factory=list)  # launch files visited

    def nodes_of(self, package: str, executable: str) -> list[NodeSpec]:
        return [n for n in self.nodes if (n.package, n.executable) == (package, executable)]


STUB_MODULES = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {c.__name__: c for c in (DeclareLaunchArgument, SetEnvironmentVariable,
                                                IncludeLaunchDescription, GroupAction, OpaqueFunction,
                                                ExecuteProcess)},
    "launch.substitutions": {c.__name__: c for c in (LaunchConfiguration, TextSubstitution,
                                                      PathJoinSubstitution, PythonExpression)},
    "launch.conditions": {"IfCondition": IfCondition, "UnlessCondition": UnlessCondition},
    "launch.launch_description_sources": {"PythonLaunchDescriptionSource": PythonLaunchDescriptionSource},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node, "PushRosNamespace": PushRosNamespace},
    "launch_ros.substitutions": {"FindPackageShare": FindPackageShare},
    "launch_ros.parameter_descriptions": {"ParameterValue": ParameterValue},
}


@contextlib.contextmanager
def stubbed_launch():
    """The stub modules in sys.modules (restoring whatever was there, e.g. the real launch)."""
    saved = {name: sys.modules.get(name) for name in STUB_MODULES}
    try:
        for name, attrs in STUB_MODULES.items():
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module
        sys.modules["launch"].actions = sys.modules["launch.actions"]
        sys.modules["launch_ros"].actions = sys.modules["launch_ros.actions"]
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_description(path: Path) -> LaunchDescription:
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    if not isinstance(description, LaunchDescription):
        raise LaunchEvalError(f"{path.name}: generate_launch_description() returned {description!r}")
    return description


def evaluate(launch_file: str | Path, arguments: dict[str, str] | None = None,
             environment: dict[str, str] | None = None) -> Launched:
    """Visit `launch_file` (a name in launch/ or a path) with command-line `arguments`."""
    path = Path(launch_file)
    if not path.is_absolute():
        path = LAUNCH_DIR / path
    result = Launched()
    context = Context(dict(arguments or {}), dict(environment or {}),
                      initial_environment=dict(environment or {}))
    with stubbed_launch():
        _visit_all(load_description(path).entities, context, result, path.name)
    result.environment = context.environment
    undeclared = set(arguments or {}) - set(result.declared)
    if undeclared:
        raise LaunchEvalError(f"{path.name}: arguments given but declared nowhere: {sorted(undeclared)}")
    return result


def _visit_all(entities, context: Context, result: Launched, source: str) -> None:
    for entity in entities:
        _visit(entity, context, result, source)


def _visit(entity: Any, context: Context, result: Launched, source: str) -> None:
    if isinstance(entity, LaunchDescription):
        return _visit_all(entity.entities, context, result, source)
    if not isinstance(entity, Action):
        raise LaunchEvalError(f"{source}: not a launch action: {entity!r}")
    if entity.condition is not None and not entity.condition.evaluate(context):
        return
    if isinstance(entity, DeclareLaunchArgument):
        result.declared.setdefault(entity.name, entity)
        if entity.name not in context.launch_configurations:
            if entity.default_value is None:
                raise LaunchEvalError(f"{source}: required launch argument {entity.name!r} not given")
            context.launch_configurations[entity.name] = perform(entity.default_value, context)
        value = context.launch_configurations[entity.name]
        if entity.choices is not None and value not in entity.choices:
            raise LaunchEvalError(f"{source}: {entity.name}:={value} is not one of {entity.choices}")
    elif isinstance(entity, SetEnvironmentVariable):
        context.environment[perform(entity.name, context)] = perform(entity.value, context)
    elif isinstance(entity, GroupAction):
        inner = context.copy() if entity.scoped else context
        if entity.scoped and not entity.forwarding:  # launch >= Jazzy also resets the environment
            inner.launch_configurations = {}
            inner.environment = dict(context.initial_environment)
        for key, value in entity.launch_configurations.items():
            inner.launch_configurations[perform(key, context)] = perform(value, context)
        _visit_all(entity.actions, inner, result, source)
    elif isinstance(entity, PushRosNamespace):
        ns = perform(entity.namespace, context)
        context.ros_namespace = ns if ns.startswith("/") else _join_ns(context.ros_namespace, ns)
    elif isinstance(entity, OpaqueFunction):
        _visit_all(entity.function(context, *entity.args, **entity.kwargs) or [], context, result, source)
    elif isinstance(entity, IncludeLaunchDescription):
        path = Path(perform(entity.source.path, context))
        arguments = {perform(k, context): perform(v, context) for k, v in entity.launch_arguments}
        if FOREIGN_SHARE in path.parents:
            configurations = {**context.launch_configurations, **arguments}
            result.foreign_includes.append(
                (str(path.relative_to(FOREIGN_SHARE)), configurations, dict(context.environment)))
            return
        if not path.is_file():
            raise LaunchEvalError(f"{source}: included launch file {path} does not exist")
        context.launch_configurations.update(arguments)
        result.files.append(path.name)
        _visit_all(load_description(path).entities, context, result, path.name)
    elif isinstance(entity, ExecuteProcess):
        result.processes.append([perform(part, context) for part in entity.cmd])
    elif isinstance(entity, Node):
        result.nodes.append(_node_spec(entity, context, source))
    else:
        raise LaunchEvalError(f"{source}: unsupported action {type(entity).__name__}")


def _join_ns(base: str, ns: str) -> str:
    return "/" + "/".join(p for p in (base.strip("/"), ns.strip("/")) if p)


def _node_spec(node: Node, context: Context, source: str) -> NodeSpec:
    kw = node.kwargs
    namespace = perform(kw.get("namespace", ""), context)
    namespace = namespace if namespace.startswith("/") else _join_ns(context.ros_namespace, namespace)
    parameters = []
    for entry in kw.get("parameters", []):
        if isinstance(entry, dict):
            parameters.append({perform(k, context): _parameter_value(v, context) for k, v in entry.items()})
        else:
            parameters.append(Path(perform(entry, context)))
    return NodeSpec(
        package=perform(kw["package"], context), executable=perform(kw["executable"], context),
        name=perform(kw["name"], context) if kw.get("name") is not None else None,
        namespace=namespace,
        remappings=[(perform(a, context), perform(b, context)) for a, b in kw.get("remappings", [])],
        parameters=parameters,
        arguments=[perform(a, context) for a in kw.get("arguments", [])],
        environment=dict(context.environment), source=source)


def _parameter_value(value, context):
    if isinstance(value, ParameterValue):
        return value.evaluate(context)
    if isinstance(value, (Substitution, list, tuple)) and not (
            isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, bool)) for v in value)):
        return _yaml_value(perform(value, context))
    return value
