//! sea-orm entities, one module per table. Crate-private: the public API speaks the
//! plain structs of [`crate::types`].
//!
//! Table and column names follow ContextForge's `mcpgateway/db.py` where the concept
//! is the same (`gateways`, `tools`, `server_tool_association`, `token_revocations`,
//! ...). JSON columns are `jsonb` on PostgreSQL and text on SQLite; timestamps are
//! `timestamptz` on PostgreSQL and RFC 3339 text on SQLite.

pub(crate) mod gateway {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "gateways")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub name: String,
        #[sea_orm(unique)]
        pub slug: String,
        pub url: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        pub transport: String,
        pub auth_type: Option<String>,
        #[sea_orm(column_type = "JsonBinary")]
        pub auth_headers: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub capabilities: Json,
        #[sea_orm(column_type = "JsonBinary")]
        pub tags: Json,
        pub enabled: bool,
        pub reachable: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub last_seen: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod tool {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tools")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub gateway_id: String,
        pub original_name: String,
        #[sea_orm(unique)]
        pub name: String,
        pub title: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(column_type = "JsonBinary")]
        pub input_schema: Json,
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub output_schema: Option<Json>,
        #[sea_orm(column_type = "JsonBinary")]
        pub annotations: Json,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod resource {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "resources")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub gateway_id: String,
        #[sea_orm(column_type = "Text")]
        pub uri: String,
        pub name: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        pub mime_type: Option<String>,
        pub size: Option<i64>,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod resource_template {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "resource_templates")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub gateway_id: String,
        #[sea_orm(column_type = "Text")]
        pub uri_template: String,
        pub name: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        pub mime_type: Option<String>,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod prompt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "prompts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub gateway_id: String,
        pub original_name: String,
        #[sea_orm(unique)]
        pub name: String,
        pub title: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(column_type = "JsonBinary")]
        pub arguments: Json,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod server {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "servers")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub name: String,
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        #[sea_orm(column_type = "Text", nullable)]
        pub icon: Option<String>,
        #[sea_orm(column_type = "JsonBinary")]
        pub tags: Json,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod server_tool {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "server_tool_association")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub server_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub tool_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod server_resource {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "server_resource_association")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub server_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub resource_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod server_prompt {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "server_prompt_association")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub server_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub prompt_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod token_revocation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "token_revocations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub revoked_at: DateTimeUtc,
        pub revoked_by: String,
        pub reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod change_counter {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "change_counters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub version: i64,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
