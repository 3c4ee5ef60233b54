//! Column slots shared by the normalisers, resolved once per dataset.

use crate::batch::columns::{ColumnBatch, ListSlot, Slot};

pub struct UserCols {
    pub uid: Slot,
    pub uid_alt: Slot,
    pub name: Slot,
    pub type_: Slot,
    pub type_id: Slot,
    pub credential_uid: Slot,
    pub email_addr: Slot,
    pub account_uid: Slot,
    pub account_name: Slot,
    pub account_type_id: Slot,
    pub account_type: Slot,
    pub groups: ListSlot,
    pub group_name: Slot,
}

impl UserCols {
    fn resolve(b: &ColumnBatch, p: &str) -> Self {
        let s = |f: &str| b.slot(&format!("{p}.{f}"));
        UserCols {
            uid: s("uid"),
            uid_alt: s("uid_alt"),
            name: s("name"),
            type_: s("type"),
            type_id: s("type_id"),
            credential_uid: s("credential_uid"),
            email_addr: s("email_addr"),
            account_uid: s("account.uid"),
            account_name: s("account.name"),
            account_type_id: s("account.type_id"),
            account_type: s("account.type"),
            groups: b.list(&format!("{p}.groups")),
            group_name: b.slot(&format!("{p}.groups.name")),
        }
    }
}

pub struct SessionCols {
    pub uid: Slot,
    pub uid_alt: Slot,
    pub issuer: Slot,
    pub credential_uid: Slot,
    pub created_time: Slot,
    pub created_time_dt: Slot,
    pub expiration_time: Slot,
    pub expiration_time_dt: Slot,
    pub is_mfa: Slot,
}

impl SessionCols {
    fn resolve(b: &ColumnBatch, p: &str) -> Self {
        let s = |f: &str| b.slot(&format!("{p}.{f}"));
        SessionCols {
            uid: s("uid"),
            uid_alt: s("uid_alt"),
            issuer: s("issuer"),
            credential_uid: s("credential_uid"),
            created_time: s("created_time"),
            created_time_dt: s("created_time_dt"),
            expiration_time: s("expiration_time"),
            expiration_time_dt: s("expiration_time_dt"),
            is_mfa: s("is_mfa"),
        }
    }
}

pub struct EndpointCols {
    pub ip: Slot,
    pub domain: Slot,
    pub hostname: Slot,
    pub svc_name: Slot,
    pub uid: Slot,
}

impl EndpointCols {
    fn resolve(b: &ColumnBatch, p: &str) -> Self {
        let s = |f: &str| b.slot(&format!("{p}.{f}"));
        EndpointCols {
            ip: s("ip"),
            domain: s("domain"),
            hostname: s("hostname"),
            svc_name: s("svc_name"),
            uid: s("uid"),
        }
    }
}

pub struct ResourceCols {
    pub list: ListSlot,
    pub uid: Slot,
    pub name: Slot,
    pub type_: Slot,
    pub namespace: Slot,
    pub version: Slot,
    pub owner_account_uid: Slot,
}

pub struct AuthCols {
    pub user: UserCols,
    pub session: SessionCols,
    pub service_name: Slot,
    pub is_mfa: Slot,
    pub is_remote: Slot,
    pub auth_protocol_id: Slot,
    pub auth_protocol: Slot,
    pub logon_type_id: Slot,
    pub logon_type: Slot,
}

pub struct AccountChangeCols {
    pub user: UserCols,
    pub policies: ListSlot,
    pub policy_uid: Slot,
    pub policy_name: Slot,
}

pub struct ManagedEntityCols {
    pub uid: Slot,
    pub name: Slot,
    pub type_: Slot,
    pub type_id: Slot,
    pub data: Slot,
}

impl ManagedEntityCols {
    fn resolve(b: &ColumnBatch, p: &str) -> Self {
        let s = |f: &str| b.slot(&format!("{p}.{f}"));
        ManagedEntityCols { uid: s("uid"), name: s("name"), type_: s("type"), type_id: s("type_id"), data: s("data") }
    }
}

pub struct EntityCols {
    pub entity: ManagedEntityCols,
    pub result: ManagedEntityCols,
    pub comment: Slot,
}

pub struct GroupCols {
    pub group_uid: Slot,
    pub group_name: Slot,
    pub group_type: Slot,
    pub user: UserCols,
    pub privileges: ListSlot,
    pub privilege: Slot,
    pub resource_uid: Slot,
    pub resource_name: Slot,
    pub resource_type: Slot,
}

/// Every column a normaliser may write; class-specific ones are `Option`s.
pub struct Cols {
    pub class_uid: Slot,
    pub class_name: Slot,
    pub category_uid: Slot,
    pub category_name: Slot,
    pub activity_id: Slot,
    pub activity_name: Slot,
    pub type_uid: Slot,
    pub type_name: Slot,
    pub severity_id: Slot,
    pub severity: Slot,
    pub time: Slot,
    pub time_dt: Slot,
    pub status_id: Slot,
    pub status: Slot,
    pub status_code: Slot,
    pub status_detail: Slot,
    pub md_version: Slot,
    pub md_product_name: Slot,
    pub md_product_vendor: Slot,
    pub md_product_version: Slot,
    pub md_feature_name: Slot,
    pub md_uid: Slot,
    pub md_original_event_uid: Slot,
    pub md_correlation_uid: Slot,
    pub md_event_code: Slot,
    pub md_log_name: Slot,
    pub md_log_source: Slot,
    pub md_original_time: Slot,
    pub md_profiles: ListSlot,
    pub md_profile: Slot,
    pub cloud_provider: Slot,
    pub cloud_region: Slot,
    pub cloud_account_uid: Slot,
    pub cloud_account_type_id: Slot,
    pub cloud_account_type: Slot,
    pub actor_user: UserCols,
    pub actor_session: SessionCols,
    pub actor_app_name: Slot,
    pub actor_idp_name: Slot,
    pub actor_idp_uid: Slot,
    pub actor_authorizations: ListSlot,
    pub actor_authz_decision: Slot,
    pub actor_authz_policy_name: Slot,
    pub api_operation: Slot,
    pub api_version: Slot,
    pub api_service_name: Slot,
    pub api_request_uid: Slot,
    pub api_request_data: Slot,
    pub api_response_error: Slot,
    pub api_response_message: Slot,
    pub api_response_data: Slot,
    pub src: EndpointCols,
    pub dst: EndpointCols,
    pub http_user_agent: Slot,
    pub http_url_string: Slot,
    pub http_url_path: Slot,
    pub resources: Option<ResourceCols>,
    pub auth: Option<AuthCols>,
    pub account_change: Option<AccountChangeCols>,
    pub entity: Option<EntityCols>,
    pub group: Option<GroupCols>,
    pub unmapped: Slot,
    pub raw_data: Slot,
    pub ts_source_file: Slot,
    pub ts_source_index: Slot,
    pub ts_kafka_topic: Slot,
    pub ts_kafka_partition: Slot,
    pub ts_kafka_offset: Slot,
    pub ts_object_bucket: Slot,
    pub ts_object_key: Slot,
    pub ts_object_version: Slot,
    pub ts_object_sha256: Slot,
    pub ts_repairs: ListSlot,
    pub ts_repair: Slot,
}

impl Cols {
    pub fn resolve(b: &ColumnBatch) -> Self {
        let s = |p: &str| b.slot(p);
        let resources = b.try_list("resources").map(|list| ResourceCols {
            list,
            uid: s("resources.uid"),
            name: s("resources.name"),
            type_: s("resources.type"),
            namespace: s("resources.namespace"),
            version: s("resources.version"),
            owner_account_uid: s("resources.owner.account.uid"),
        });
        let auth = b.try_slot("auth_protocol_id").map(|auth_protocol_id| AuthCols {
            user: UserCols::resolve(b, "user"),
            session: SessionCols::resolve(b, "session"),
            service_name: s("service.name"),
            is_mfa: s("is_mfa"),
            is_remote: s("is_remote"),
            auth_protocol_id,
            auth_protocol: s("auth_protocol"),
            logon_type_id: s("logon_type_id"),
            logon_type: s("logon_type"),
        });
        let account_change = b.try_list("policies").map(|policies| AccountChangeCols {
            user: UserCols::resolve(b, "user"),
            policies,
            policy_uid: s("policies.uid"),
            policy_name: s("policies.name"),
        });
        let entity = b.try_slot("entity.uid").map(|_| EntityCols {
            entity: ManagedEntityCols::resolve(b, "entity"),
            result: ManagedEntityCols::resolve(b, "entity_result"),
            comment: s("comment"),
        });
        let group = b.try_slot("group.uid").map(|group_uid| GroupCols {
            group_uid,
            group_name: s("group.name"),
            group_type: s("group.type"),
            user: UserCols::resolve(b, "user"),
            privileges: b.list("privileges"),
            privilege: s("privileges[]"),
            resource_uid: s("resource.uid"),
            resource_name: s("resource.name"),
            resource_type: s("resource.type"),
        });
        Cols {
            class_uid: s("class_uid"),
            class_name: s("class_name"),
            category_uid: s("category_uid"),
            category_name: s("category_name"),
            activity_id: s("activity_id"),
            activity_name: s("activity_name"),
            type_uid: s("type_uid"),
            type_name: s("type_name"),
            severity_id: s("severity_id"),
            severity: s("severity"),
            time: s("time"),
            time_dt: s("time_dt"),
            status_id: s("status_id"),
            status: s("status"),
            status_code: s("status_code"),
            status_detail: s("status_detail"),
            md_version: s("metadata.version"),
            md_product_name: s("metadata.product.name"),
            md_product_vendor: s("metadata.product.vendor_name"),
            md_product_version: s("metadata.product.version"),
            md_feature_name: s("metadata.product.feature.name"),
            md_uid: s("metadata.uid"),
            md_original_event_uid: s("metadata.original_event_uid"),
            md_correlation_uid: s("metadata.correlation_uid"),
            md_event_code: s("metadata.event_code"),
            md_log_name: s("metadata.log_name"),
            md_log_source: s("metadata.log_source"),
            md_original_time: s("metadata.original_time"),
            md_profiles: b.list("metadata.profiles"),
            md_profile: s("metadata.profiles[]"),
            cloud_provider: s("cloud.provider"),
            cloud_region: s("cloud.region"),
            cloud_account_uid: s("cloud.account.uid"),
            cloud_account_type_id: s("cloud.account.type_id"),
            cloud_account_type: s("cloud.account.type"),
            actor_user: UserCols::resolve(b, "actor.user"),
            actor_session: SessionCols::resolve(b, "actor.session"),
            actor_app_name: s("actor.app_name"),
            actor_idp_name: s("actor.idp.name"),
            actor_idp_uid: s("actor.idp.uid"),
            actor_authorizations: b.list("actor.authorizations"),
            actor_authz_decision: s("actor.authorizations.decision"),
            actor_authz_policy_name: s("actor.authorizations.policy.name"),
            api_operation: s("api.operation"),
            api_version: s("api.version"),
            api_service_name: s("api.service.name"),
            api_request_uid: s("api.request.uid"),
            api_request_data: s("api.request.data"),
            api_response_error: s("api.response.error"),
            api_response_message: s("api.response.message"),
            api_response_data: s("api.response.data"),
            src: EndpointCols::resolve(b, "src_endpoint"),
            dst: EndpointCols::resolve(b, "dst_endpoint"),
            http_user_agent: s("http_request.user_agent"),
            http_url_string: s("http_request.url.url_string"),
            http_url_path: s("http_request.url.path"),
            resources,
            auth,
            account_change,
            entity,
            group,
            unmapped: s("unmapped"),
            raw_data: s("raw_data"),
            ts_source_file: s("trailship.source_file"),
            ts_source_index: s("trailship.source_index"),
            ts_kafka_topic: s("trailship.kafka.topic"),
            ts_kafka_partition: s("trailship.kafka.partition"),
            ts_kafka_offset: s("trailship.kafka.offset"),
            ts_object_bucket: s("trailship.source_object.bucket"),
            ts_object_key: s("trailship.source_object.key"),
            ts_object_version: s("trailship.source_object.version_id"),
            ts_object_sha256: s("trailship.source_object.sha256"),
            ts_repairs: b.list("trailship.repairs"),
            ts_repair: s("trailship.repairs[]"),
        }
    }
}
