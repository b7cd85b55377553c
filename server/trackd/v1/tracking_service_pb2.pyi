import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DecisionReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_REASON_UNSPECIFIED: _ClassVar[DecisionReason]
    DECISION_REASON_BUCKETED: _ClassVar[DecisionReason]
    DECISION_REASON_FORCED: _ClassVar[DecisionReason]
    DECISION_REASON_WHITELISTED: _ClassVar[DecisionReason]
    DECISION_REASON_STICKY: _ClassVar[DecisionReason]
    DECISION_REASON_NOT_RUNNING: _ClassVar[DecisionReason]
    DECISION_REASON_AUDIENCE_MISMATCH: _ClassVar[DecisionReason]
    DECISION_REASON_OUTSIDE_TRAFFIC: _ClassVar[DecisionReason]
    DECISION_REASON_NOT_IN_GROUP_SLOT: _ClassVar[DecisionReason]

class DecideOption(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECIDE_OPTION_UNSPECIFIED: _ClassVar[DecideOption]
    DECIDE_OPTION_DISABLE_DECISION_EVENT: _ClassVar[DecideOption]
    DECIDE_OPTION_ENABLED_FLAGS_ONLY: _ClassVar[DecideOption]
    DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE: _ClassVar[DecideOption]
    DECIDE_OPTION_INCLUDE_REASONS: _ClassVar[DecideOption]
    DECIDE_OPTION_EXCLUDE_VARIABLES: _ClassVar[DecideOption]

class RuleType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RULE_TYPE_UNSPECIFIED: _ClassVar[RuleType]
    RULE_TYPE_EXPERIMENT: _ClassVar[RuleType]
    RULE_TYPE_FEATURE_TEST: _ClassVar[RuleType]
    RULE_TYPE_ROLLOUT: _ClassVar[RuleType]
    RULE_TYPE_HOLDOUT: _ClassVar[RuleType]
DECISION_REASON_UNSPECIFIED: DecisionReason
DECISION_REASON_BUCKETED: DecisionReason
DECISION_REASON_FORCED: DecisionReason
DECISION_REASON_WHITELISTED: DecisionReason
DECISION_REASON_STICKY: DecisionReason
DECISION_REASON_NOT_RUNNING: DecisionReason
DECISION_REASON_AUDIENCE_MISMATCH: DecisionReason
DECISION_REASON_OUTSIDE_TRAFFIC: DecisionReason
DECISION_REASON_NOT_IN_GROUP_SLOT: DecisionReason
DECIDE_OPTION_UNSPECIFIED: DecideOption
DECIDE_OPTION_DISABLE_DECISION_EVENT: DecideOption
DECIDE_OPTION_ENABLED_FLAGS_ONLY: DecideOption
DECIDE_OPTION_IGNORE_USER_PROFILE_SERVICE: DecideOption
DECIDE_OPTION_INCLUDE_REASONS: DecideOption
DECIDE_OPTION_EXCLUDE_VARIABLES: DecideOption
RULE_TYPE_UNSPECIFIED: RuleType
RULE_TYPE_EXPERIMENT: RuleType
RULE_TYPE_FEATURE_TEST: RuleType
RULE_TYPE_ROLLOUT: RuleType
RULE_TYPE_HOLDOUT: RuleType

class ActivateRequest(_message.Message):
    __slots__ = ("experiment_key", "user_id", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    user_id: str
    attributes: _containers.MessageMap[str, _struct_pb2.Value]
    def __init__(self, experiment_key: _Optional[str] = ..., user_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, _struct_pb2.Value]] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("variation_key", "experiment_id", "variation_id", "reason", "experiment_key", "impression_recorded", "revision", "attribution_degraded")
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_RECORDED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    variation_key: str
    experiment_id: str
    variation_id: str
    reason: DecisionReason
    experiment_key: str
    impression_recorded: bool
    revision: str
    attribution_degraded: bool
    def __init__(self, variation_key: _Optional[str] = ..., experiment_id: _Optional[str] = ..., variation_id: _Optional[str] = ..., reason: _Optional[_Union[DecisionReason, str]] = ..., experiment_key: _Optional[str] = ..., impression_recorded: _Optional[bool] = ..., revision: _Optional[str] = ..., attribution_degraded: _Optional[bool] = ...) -> None: ...

class GetVariationRequest(_message.Message):
    __slots__ = ("experiment_key", "user_id", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    user_id: str
    attributes: _containers.MessageMap[str, _struct_pb2.Value]
    def __init__(self, experiment_key: _Optional[str] = ..., user_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, _struct_pb2.Value]] = ...) -> None: ...

class GetVariationResponse(_message.Message):
    __slots__ = ("variation_key", "experiment_id", "variation_id", "reason", "experiment_key", "revision")
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    variation_key: str
    experiment_id: str
    variation_id: str
    reason: DecisionReason
    experiment_key: str
    revision: str
    def __init__(self, variation_key: _Optional[str] = ..., experiment_id: _Optional[str] = ..., variation_id: _Optional[str] = ..., reason: _Optional[_Union[DecisionReason, str]] = ..., experiment_key: _Optional[str] = ..., revision: _Optional[str] = ...) -> None: ...

class TrackRequest(_message.Message):
    __slots__ = ("event_key", "user_id", "attributes", "tags")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    EVENT_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    event_key: str
    user_id: str
    attributes: _containers.MessageMap[str, _struct_pb2.Value]
    tags: _containers.MessageMap[str, _struct_pb2.Value]
    def __init__(self, event_key: _Optional[str] = ..., user_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., tags: _Optional[_Mapping[str, _struct_pb2.Value]] = ...) -> None: ...

class Attribution(_message.Message):
    __slots__ = ("experiment_key", "variation_key", "experiment_id", "variation_id")
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIATION_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    variation_key: str
    experiment_id: str
    variation_id: str
    def __init__(self, experiment_key: _Optional[str] = ..., variation_key: _Optional[str] = ..., experiment_id: _Optional[str] = ..., variation_id: _Optional[str] = ...) -> None: ...

class TrackResponse(_message.Message):
    __slots__ = ("attributions", "uuid", "attribution_unknown")
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    attributions: _containers.RepeatedCompositeFieldContainer[Attribution]
    uuid: str
    attribution_unknown: bool
    def __init__(self, attributions: _Optional[_Iterable[_Union[Attribution, _Mapping]]] = ..., uuid: _Optional[str] = ..., attribution_unknown: _Optional[bool] = ...) -> None: ...

class TrackStreamRequest(_message.Message):
    __slots__ = ("sequence", "events", "producer_id")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    events: _containers.RepeatedCompositeFieldContainer[TrackRequest]
    producer_id: str
    def __init__(self, sequence: _Optional[int] = ..., events: _Optional[_Iterable[_Union[TrackRequest, _Mapping]]] = ..., producer_id: _Optional[str] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("index", "code", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    code: int
    message: str
    def __init__(self, index: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class TrackStreamResponse(_message.Message):
    __slots__ = ("sequence", "accepted", "errors", "attributed", "code", "message", "attribution_unknown", "duplicate")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    accepted: int
    errors: _containers.RepeatedCompositeFieldContainer[EventError]
    attributed: int
    code: int
    message: str
    attribution_unknown: bool
    duplicate: bool
    def __init__(self, sequence: _Optional[int] = ..., accepted: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[EventError, _Mapping]]] = ..., attributed: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., attribution_unknown: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class GetExperimentResultsRequest(_message.Message):
    __slots__ = ("experiment_key",)
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    def __init__(self, experiment_key: _Optional[str] = ...) -> None: ...

class EventResults(_message.Message):
    __slots__ = ("event_key", "converters", "conversions", "revenue", "value")
    EVENT_KEY_FIELD_NUMBER: _ClassVar[int]
    CONVERTERS_FIELD_NUMBER: _ClassVar[int]
    CONVERSIONS_FIELD_NUMBER: _ClassVar[int]
    REVENUE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    event_key: str
    converters: int
    conversions: int
    revenue: int
    value: float
    def __init__(self, event_key: _Optional[str] = ..., converters: _Optional[int] = ..., conversions: _Optional[int] = ..., revenue: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class VariationResults(_message.Message):
    __slots__ = ("variation_key", "variation_id", "visitors", "events")
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    VARIATION_ID_FIELD_NUMBER: _ClassVar[int]
    VISITORS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    variation_key: str
    variation_id: str
    visitors: int
    events: _containers.RepeatedCompositeFieldContainer[EventResults]
    def __init__(self, variation_key: _Optional[str] = ..., variation_id: _Optional[str] = ..., visitors: _Optional[int] = ..., events: _Optional[_Iterable[_Union[EventResults, _Mapping]]] = ...) -> None: ...

class GetExperimentResultsResponse(_message.Message):
    __slots__ = ("experiment_key", "experiment_id", "variations", "fleet_wide")
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    FLEET_WIDE_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    experiment_id: str
    variations: _containers.RepeatedCompositeFieldContainer[VariationResults]
    fleet_wide: bool
    def __init__(self, experiment_key: _Optional[str] = ..., experiment_id: _Optional[str] = ..., variations: _Optional[_Iterable[_Union[VariationResults, _Mapping]]] = ..., fleet_wide: _Optional[bool] = ...) -> None: ...

class SetForcedVariationRequest(_message.Message):
    __slots__ = ("experiment_key", "user_id", "variation_key")
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    user_id: str
    variation_key: str
    def __init__(self, experiment_key: _Optional[str] = ..., user_id: _Optional[str] = ..., variation_key: _Optional[str] = ...) -> None: ...

class SetForcedVariationResponse(_message.Message):
    __slots__ = ("variation_key",)
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    variation_key: str
    def __init__(self, variation_key: _Optional[str] = ...) -> None: ...

class GetForcedVariationRequest(_message.Message):
    __slots__ = ("experiment_key", "user_id")
    EXPERIMENT_KEY_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    experiment_key: str
    user_id: str
    def __init__(self, experiment_key: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetForcedVariationResponse(_message.Message):
    __slots__ = ("variation_key",)
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    variation_key: str
    def __init__(self, variation_key: _Optional[str] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Variation(_message.Message):
    __slots__ = ("id", "key")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("id", "key", "status", "running", "variations", "group_id", "layer_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    LAYER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    status: str
    running: bool
    variations: _containers.RepeatedCompositeFieldContainer[Variation]
    group_id: str
    layer_id: str
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., status: _Optional[str] = ..., running: _Optional[bool] = ..., variations: _Optional[_Iterable[_Union[Variation, _Mapping]]] = ..., group_id: _Optional[str] = ..., layer_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "key", "experiment_ids")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    experiment_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., experiment_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Attribute(_message.Message):
    __slots__ = ("id", "key")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("revision", "account_id", "project_id", "experiments", "events", "attributes", "datafile_version", "loaded_at", "flags")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    DATAFILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    revision: str
    account_id: str
    project_id: str
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    attributes: _containers.RepeatedCompositeFieldContainer[Attribute]
    datafile_version: str
    loaded_at: _timestamp_pb2.Timestamp
    flags: _containers.RepeatedCompositeFieldContainer[Flag]
    def __init__(self, revision: _Optional[str] = ..., account_id: _Optional[str] = ..., project_id: _Optional[str] = ..., experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ..., attributes: _Optional[_Iterable[_Union[Attribute, _Mapping]]] = ..., datafile_version: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., flags: _Optional[_Iterable[_Union[Flag, _Mapping]]] = ...) -> None: ...

class WatchConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchConfigResponse(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: GetConfigResponse
    def __init__(self, config: _Optional[_Union[GetConfigResponse, _Mapping]] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("user_id", "attributes", "flag_keys", "options")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _struct_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    FLAG_KEYS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    attributes: _containers.MessageMap[str, _struct_pb2.Value]
    flag_keys: _containers.RepeatedScalarFieldContainer[str]
    options: _containers.RepeatedScalarFieldContainer[DecideOption]
    def __init__(self, user_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, _struct_pb2.Value]] = ..., flag_keys: _Optional[_Iterable[str]] = ..., options: _Optional[_Iterable[_Union[DecideOption, str]]] = ...) -> None: ...

class FlagDecision(_message.Message):
    __slots__ = ("flag_key", "enabled", "variation_key", "rule_key", "rule_type", "variables", "reasons", "impression_recorded", "error")
    FLAG_KEY_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    RULE_KEY_FIELD_NUMBER: _ClassVar[int]
    RULE_TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    IMPRESSION_RECORDED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    flag_key: str
    enabled: bool
    variation_key: str
    rule_key: str
    rule_type: RuleType
    variables: _struct_pb2.Struct
    reasons: _containers.RepeatedScalarFieldContainer[str]
    impression_recorded: bool
    error: str
    def __init__(self, flag_key: _Optional[str] = ..., enabled: _Optional[bool] = ..., variation_key: _Optional[str] = ..., rule_key: _Optional[str] = ..., rule_type: _Optional[_Union[RuleType, str]] = ..., variables: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reasons: _Optional[_Iterable[str]] = ..., impression_recorded: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class DecideResponse(_message.Message):
    __slots__ = ("decisions", "revision")
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[FlagDecision]
    revision: str
    def __init__(self, decisions: _Optional[_Iterable[_Union[FlagDecision, _Mapping]]] = ..., revision: _Optional[str] = ...) -> None: ...

class SetForcedDecisionRequest(_message.Message):
    __slots__ = ("user_id", "flag_key", "rule_key", "variation_key")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FLAG_KEY_FIELD_NUMBER: _ClassVar[int]
    RULE_KEY_FIELD_NUMBER: _ClassVar[int]
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    flag_key: str
    rule_key: str
    variation_key: str
    def __init__(self, user_id: _Optional[str] = ..., flag_key: _Optional[str] = ..., rule_key: _Optional[str] = ..., variation_key: _Optional[str] = ...) -> None: ...

class SetForcedDecisionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetForcedDecisionRequest(_message.Message):
    __slots__ = ("user_id", "flag_key", "rule_key")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FLAG_KEY_FIELD_NUMBER: _ClassVar[int]
    RULE_KEY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    flag_key: str
    rule_key: str
    def __init__(self, user_id: _Optional[str] = ..., flag_key: _Optional[str] = ..., rule_key: _Optional[str] = ...) -> None: ...

class GetForcedDecisionResponse(_message.Message):
    __slots__ = ("variation_key",)
    VARIATION_KEY_FIELD_NUMBER: _ClassVar[int]
    variation_key: str
    def __init__(self, variation_key: _Optional[str] = ...) -> None: ...

class RemoveForcedDecisionRequest(_message.Message):
    __slots__ = ("user_id", "flag_key", "rule_key")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    FLAG_KEY_FIELD_NUMBER: _ClassVar[int]
    RULE_KEY_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    flag_key: str
    rule_key: str
    def __init__(self, user_id: _Optional[str] = ..., flag_key: _Optional[str] = ..., rule_key: _Optional[str] = ...) -> None: ...

class RemoveForcedDecisionResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class RemoveAllForcedDecisionsRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class RemoveAllForcedDecisionsResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class FlagVariable(_message.Message):
    __slots__ = ("id", "key", "type", "default_value")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    type: str
    default_value: _struct_pb2.Value
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., type: _Optional[str] = ..., default_value: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ...) -> None: ...

class FlagRule(_message.Message):
    __slots__ = ("id", "key", "type", "variations")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VARIATIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    type: RuleType
    variations: _containers.RepeatedCompositeFieldContainer[Variation]
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., type: _Optional[_Union[RuleType, str]] = ..., variations: _Optional[_Iterable[_Union[Variation, _Mapping]]] = ...) -> None: ...

class Flag(_message.Message):
    __slots__ = ("id", "key", "rules", "variables")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    id: str
    key: str
    rules: _containers.RepeatedCompositeFieldContainer[FlagRule]
    variables: _containers.RepeatedCompositeFieldContainer[FlagVariable]
    def __init__(self, id: _Optional[str] = ..., key: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[FlagRule, _Mapping]]] = ..., variables: _Optional[_Iterable[_Union[FlagVariable, _Mapping]]] = ...) -> None: ...
