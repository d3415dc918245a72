//! The kinds the testbed reads and writes as protobuf, with the JSON mapping of every
//! message they contain (`message!`). Kinds not listed here are JSON only: a protobuf
//! body of another kind is refused (415), and a client that accepts nothing but
//! protobuf for one gets 406.

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use serde_json::Value;

use super::json::{Json, message};

message!(meta::ObjectMeta {
    name,
    generate_name,
    namespace,
    self_link,
    uid,
    resource_version,
    generation,
    creation_timestamp,
    deletion_timestamp,
    deletion_grace_period_seconds: keep,
    labels,
    annotations,
    owner_references,
    finalizers,
    managed_fields,
});
message!(meta::ListMeta { self_link, resource_version, r#continue, remaining_item_count: keep });
message!(meta::OwnerReference { api_version, kind, name, uid, controller, block_owner_deletion });
message!(meta::ManagedFieldsEntry {
    manager,
    operation,
    api_version,
    time,
    fields_type,
    fields_v1,
    subresource,
});
message!(meta::Status { metadata, status, message, reason, details, code });
message!(meta::StatusDetails { name, group, kind, uid, causes, retry_after_seconds });
message!(meta::StatusCause { reason, message, field });
message!(meta::DeleteOptions {
    grace_period_seconds: keep,
    preconditions,
    orphan_dependents,
    propagation_policy,
    dry_run,
    ignore_store_read_error_with_cluster_breaking_potential,
});
message!(meta::Preconditions { uid, resource_version });

message!(core::Secret { metadata, immutable, data, string_data, r#type });
message!(core::SecretList { metadata, items });
message!(core::ConfigMap { metadata, immutable, data, binary_data });
message!(core::ConfigMapList { metadata, items });
message!(core::Namespace { metadata, spec, status });
message!(core::NamespaceSpec { finalizers });
message!(core::NamespaceStatus { phase, conditions });
message!(core::NamespaceCondition { r#type, status, last_transition_time, reason, message });
message!(core::NamespaceList { metadata, items });
message!(core::ServiceAccount {
    metadata,
    secrets,
    image_pull_secrets,
    automount_service_account_token,
});
message!(core::ServiceAccountList { metadata, items });
message!(core::ObjectReference {
    kind,
    namespace,
    name,
    uid,
    api_version,
    resource_version,
    field_path,
});
message!(core::LocalObjectReference { name });
message!(core::Event {
    metadata,
    involved_object,
    reason,
    message,
    source,
    first_timestamp,
    last_timestamp,
    count,
    r#type,
    event_time,
    series,
    action,
    related,
    reporting_component,
    reporting_instance,
});
message!(core::EventSource { component, host });
message!(core::EventSeries { count, last_observed_time });
message!(core::EventList { metadata, items });

/// One kind the protobuf codec knows.
pub(crate) struct Kind {
    /// The API group (`""` is core); `None`: the kind is in every group (the
    /// `meta.k8s.io` kinds `Status` and `DeleteOptions`, which every group version has).
    pub group: Option<&'static str>,
    pub kind: &'static str,
    /// The message bytes (what `runtime.Unknown.raw` holds) to a JSON object.
    pub decode: fn(&[u8]) -> Result<Value, String>,
    /// A JSON object to the message bytes.
    pub encode: fn(&Value) -> Result<Vec<u8>, String>,
}

fn decode_as<T: Message + Default + Json>(raw: &[u8]) -> Result<Value, String> {
    let message = T::decode(raw).map_err(|e| e.to_string())?;
    Ok(message.to_json())
}

fn encode_as<T: Message + Default + Json>(object: &Value) -> Result<Vec<u8>, String> {
    Ok(T::from_json(object, "")?.encode_to_vec())
}

const fn kind<T: Message + Default + Json>(
    group: Option<&'static str>,
    kind: &'static str,
) -> Kind {
    Kind { group, kind, decode: decode_as::<T>, encode: encode_as::<T> }
}

const CORE: Option<&str> = Some("");

pub(crate) static KINDS: &[Kind] = &[
    kind::<core::Secret>(CORE, "Secret"),
    kind::<core::SecretList>(CORE, "SecretList"),
    kind::<core::ConfigMap>(CORE, "ConfigMap"),
    kind::<core::ConfigMapList>(CORE, "ConfigMapList"),
    kind::<core::Namespace>(CORE, "Namespace"),
    kind::<core::NamespaceList>(CORE, "NamespaceList"),
    kind::<core::ServiceAccount>(CORE, "ServiceAccount"),
    kind::<core::ServiceAccountList>(CORE, "ServiceAccountList"),
    kind::<core::Event>(CORE, "Event"),
    kind::<core::EventList>(CORE, "EventList"),
    kind::<meta::Status>(None, "Status"),
    kind::<meta::DeleteOptions>(None, "DeleteOptions"),
];

/// The codec of `kind` in `group`, if the testbed has one.
pub(crate) fn find(group: &str, kind: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.kind == kind && k.group.is_none_or(|g| g == group))
}
