//! Schema migrations (sea-orm-migration). Applied migrations are recorded in the
//! `fleetgate_migrations` table, so [`crate::Store::migrate`] is idempotent.
//!
//! Never edit a migration that has shipped: add a new `mNNNN_*` module and list it in
//! [`Migrator::migrations`].

use sea_orm_migration::prelude::*;

pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m0001_initial::Migration)]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("fleetgate_migrations").into_iden()
    }
}

/// Names of the change counters seeded by the first migration.
pub(crate) const COUNTER_REGISTRY: &str = "registry";
pub(crate) const COUNTER_REVOCATIONS: &str = "revocations";

mod m0001_initial {
    use super::{COUNTER_REGISTRY, COUNTER_REVOCATIONS};
    use sea_orm_migration::prelude::*;

    #[derive(DeriveMigrationName)]
    pub(crate) struct Migration;

    #[derive(DeriveIden)]
    enum Gateways {
        Table,
        Id,
        Name,
        Slug,
        Url,
        Description,
        Transport,
        AuthType,
        AuthHeaders,
        Capabilities,
        Tags,
        Enabled,
        Reachable,
        CreatedAt,
        UpdatedAt,
        LastSeen,
    }

    #[derive(DeriveIden)]
    enum Tools {
        Table,
        Id,
        GatewayId,
        OriginalName,
        Name,
        Title,
        Description,
        InputSchema,
        OutputSchema,
        Annotations,
        Enabled,
        CreatedAt,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum Resources {
        Table,
        Id,
        GatewayId,
        Uri,
        Name,
        Description,
        MimeType,
        Size,
        Enabled,
        CreatedAt,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum ResourceTemplates {
        Table,
        Id,
        GatewayId,
        UriTemplate,
        Name,
        Description,
        MimeType,
        Enabled,
        CreatedAt,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum Prompts {
        Table,
        Id,
        GatewayId,
        OriginalName,
        Name,
        Title,
        Description,
        Arguments,
        Enabled,
        CreatedAt,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum Servers {
        Table,
        Id,
        Name,
        Description,
        Icon,
        Tags,
        Enabled,
        CreatedAt,
        UpdatedAt,
    }

    #[derive(DeriveIden)]
    enum ServerToolAssociation {
        Table,
        ServerId,
        ToolId,
    }

    #[derive(DeriveIden)]
    enum ServerResourceAssociation {
        Table,
        ServerId,
        ResourceId,
    }

    #[derive(DeriveIden)]
    enum ServerPromptAssociation {
        Table,
        ServerId,
        PromptId,
    }

    #[derive(DeriveIden)]
    enum TokenRevocations {
        Table,
        Jti,
        RevokedAt,
        RevokedBy,
        Reason,
    }

    #[derive(DeriveIden)]
    enum ChangeCounters {
        Table,
        Name,
        Version,
        UpdatedAt,
    }

    fn id<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).string().not_null().primary_key().take()
    }
    fn text<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).text().not_null().take()
    }
    fn text_null<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).text().null().take()
    }
    fn string<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).string().not_null().take()
    }
    fn string_null<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).string().null().take()
    }
    fn json<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).json_binary().not_null().take()
    }
    fn json_null<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).json_binary().null().take()
    }
    fn flag<T: IntoIden + 'static>(col: T, default: bool) -> ColumnDef {
        ColumnDef::new(col)
            .boolean()
            .not_null()
            .default(default)
            .take()
    }
    fn ts<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col)
            .timestamp_with_time_zone()
            .not_null()
            .take()
    }
    fn ts_null<T: IntoIden + 'static>(col: T) -> ColumnDef {
        ColumnDef::new(col).timestamp_with_time_zone().null().take()
    }

    /// `child.col` → `parent.id`, deleting the child with the parent.
    fn cascade(
        child: impl IntoIden + 'static,
        col: impl IntoIden + 'static,
        parent: impl IntoIden + 'static,
        parent_col: impl IntoIden + 'static,
    ) -> ForeignKeyCreateStatement {
        ForeignKey::create()
            .from(child, col)
            .to(parent, parent_col)
            .on_delete(ForeignKeyAction::Cascade)
            .on_update(ForeignKeyAction::Cascade)
            .take()
    }

    fn index(name: &str, table: impl IntoIden + 'static, cols: &[DynIden]) -> IndexCreateStatement {
        let mut idx = Index::create();
        idx.name(name).table(table).if_not_exists();
        for c in cols {
            idx.col(c.clone());
        }
        idx.take()
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Migration {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .create_table(
                    Table::create()
                        .table(Gateways::Table)
                        .col(id(Gateways::Id))
                        .col(string(Gateways::Name).unique_key())
                        .col(string(Gateways::Slug).unique_key())
                        .col(text(Gateways::Url))
                        .col(text_null(Gateways::Description))
                        .col(string(Gateways::Transport))
                        .col(string_null(Gateways::AuthType))
                        .col(json(Gateways::AuthHeaders))
                        .col(json(Gateways::Capabilities))
                        .col(json(Gateways::Tags))
                        .col(flag(Gateways::Enabled, true))
                        .col(flag(Gateways::Reachable, true))
                        .col(ts(Gateways::CreatedAt))
                        .col(ts(Gateways::UpdatedAt))
                        .col(ts_null(Gateways::LastSeen))
                        .take(),
                )
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(Tools::Table)
                        .col(id(Tools::Id))
                        .col(string(Tools::GatewayId))
                        .col(string(Tools::OriginalName))
                        .col(string(Tools::Name).unique_key())
                        .col(string_null(Tools::Title))
                        .col(text_null(Tools::Description))
                        .col(json(Tools::InputSchema))
                        .col(json_null(Tools::OutputSchema))
                        .col(json(Tools::Annotations))
                        .col(flag(Tools::Enabled, true))
                        .col(ts(Tools::CreatedAt))
                        .col(ts(Tools::UpdatedAt))
                        .foreign_key(&mut cascade(
                            Tools::Table,
                            Tools::GatewayId,
                            Gateways::Table,
                            Gateways::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(
                    index(
                        "uq_tools_gateway_id_original_name",
                        Tools::Table,
                        &[
                            Tools::GatewayId.into_iden(),
                            Tools::OriginalName.into_iden(),
                        ],
                    )
                    .unique()
                    .take(),
                )
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(Resources::Table)
                        .col(id(Resources::Id))
                        .col(string(Resources::GatewayId))
                        .col(text(Resources::Uri))
                        .col(string(Resources::Name))
                        .col(text_null(Resources::Description))
                        .col(string_null(Resources::MimeType))
                        .col(ColumnDef::new(Resources::Size).big_integer().null())
                        .col(flag(Resources::Enabled, true))
                        .col(ts(Resources::CreatedAt))
                        .col(ts(Resources::UpdatedAt))
                        .foreign_key(&mut cascade(
                            Resources::Table,
                            Resources::GatewayId,
                            Gateways::Table,
                            Gateways::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(
                    index(
                        "uq_resources_gateway_id_uri",
                        Resources::Table,
                        &[Resources::GatewayId.into_iden(), Resources::Uri.into_iden()],
                    )
                    .unique()
                    .take(),
                )
                .await?;
            manager
                .create_index(index(
                    "ix_resources_uri",
                    Resources::Table,
                    &[Resources::Uri.into_iden()],
                ))
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(ResourceTemplates::Table)
                        .col(id(ResourceTemplates::Id))
                        .col(string(ResourceTemplates::GatewayId))
                        .col(text(ResourceTemplates::UriTemplate))
                        .col(string(ResourceTemplates::Name))
                        .col(text_null(ResourceTemplates::Description))
                        .col(string_null(ResourceTemplates::MimeType))
                        .col(flag(ResourceTemplates::Enabled, true))
                        .col(ts(ResourceTemplates::CreatedAt))
                        .col(ts(ResourceTemplates::UpdatedAt))
                        .foreign_key(&mut cascade(
                            ResourceTemplates::Table,
                            ResourceTemplates::GatewayId,
                            Gateways::Table,
                            Gateways::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(
                    index(
                        "uq_resource_templates_gateway_id_uri_template",
                        ResourceTemplates::Table,
                        &[
                            ResourceTemplates::GatewayId.into_iden(),
                            ResourceTemplates::UriTemplate.into_iden(),
                        ],
                    )
                    .unique()
                    .take(),
                )
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(Prompts::Table)
                        .col(id(Prompts::Id))
                        .col(string(Prompts::GatewayId))
                        .col(string(Prompts::OriginalName))
                        .col(string(Prompts::Name).unique_key())
                        .col(string_null(Prompts::Title))
                        .col(text_null(Prompts::Description))
                        .col(json(Prompts::Arguments))
                        .col(flag(Prompts::Enabled, true))
                        .col(ts(Prompts::CreatedAt))
                        .col(ts(Prompts::UpdatedAt))
                        .foreign_key(&mut cascade(
                            Prompts::Table,
                            Prompts::GatewayId,
                            Gateways::Table,
                            Gateways::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(
                    index(
                        "uq_prompts_gateway_id_original_name",
                        Prompts::Table,
                        &[
                            Prompts::GatewayId.into_iden(),
                            Prompts::OriginalName.into_iden(),
                        ],
                    )
                    .unique()
                    .take(),
                )
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(Servers::Table)
                        .col(id(Servers::Id))
                        .col(string(Servers::Name).unique_key())
                        .col(text_null(Servers::Description))
                        .col(text_null(Servers::Icon))
                        .col(json(Servers::Tags))
                        .col(flag(Servers::Enabled, true))
                        .col(ts(Servers::CreatedAt))
                        .col(ts(Servers::UpdatedAt))
                        .take(),
                )
                .await?;

            // Association tables: a row goes when either side goes.
            manager
                .create_table(
                    Table::create()
                        .table(ServerToolAssociation::Table)
                        .col(string(ServerToolAssociation::ServerId))
                        .col(string(ServerToolAssociation::ToolId))
                        .primary_key(
                            Index::create()
                                .col(ServerToolAssociation::ServerId)
                                .col(ServerToolAssociation::ToolId),
                        )
                        .foreign_key(&mut cascade(
                            ServerToolAssociation::Table,
                            ServerToolAssociation::ServerId,
                            Servers::Table,
                            Servers::Id,
                        ))
                        .foreign_key(&mut cascade(
                            ServerToolAssociation::Table,
                            ServerToolAssociation::ToolId,
                            Tools::Table,
                            Tools::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(index(
                    "ix_server_tool_association_tool_id",
                    ServerToolAssociation::Table,
                    &[ServerToolAssociation::ToolId.into_iden()],
                ))
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(ServerResourceAssociation::Table)
                        .col(string(ServerResourceAssociation::ServerId))
                        .col(string(ServerResourceAssociation::ResourceId))
                        .primary_key(
                            Index::create()
                                .col(ServerResourceAssociation::ServerId)
                                .col(ServerResourceAssociation::ResourceId),
                        )
                        .foreign_key(&mut cascade(
                            ServerResourceAssociation::Table,
                            ServerResourceAssociation::ServerId,
                            Servers::Table,
                            Servers::Id,
                        ))
                        .foreign_key(&mut cascade(
                            ServerResourceAssociation::Table,
                            ServerResourceAssociation::ResourceId,
                            Resources::Table,
                            Resources::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(index(
                    "ix_server_resource_association_resource_id",
                    ServerResourceAssociation::Table,
                    &[ServerResourceAssociation::ResourceId.into_iden()],
                ))
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(ServerPromptAssociation::Table)
                        .col(string(ServerPromptAssociation::ServerId))
                        .col(string(ServerPromptAssociation::PromptId))
                        .primary_key(
                            Index::create()
                                .col(ServerPromptAssociation::ServerId)
                                .col(ServerPromptAssociation::PromptId),
                        )
                        .foreign_key(&mut cascade(
                            ServerPromptAssociation::Table,
                            ServerPromptAssociation::ServerId,
                            Servers::Table,
                            Servers::Id,
                        ))
                        .foreign_key(&mut cascade(
                            ServerPromptAssociation::Table,
                            ServerPromptAssociation::PromptId,
                            Prompts::Table,
                            Prompts::Id,
                        ))
                        .take(),
                )
                .await?;
            manager
                .create_index(index(
                    "ix_server_prompt_association_prompt_id",
                    ServerPromptAssociation::Table,
                    &[ServerPromptAssociation::PromptId.into_iden()],
                ))
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(TokenRevocations::Table)
                        .col(id(TokenRevocations::Jti))
                        .col(ts(TokenRevocations::RevokedAt))
                        .col(string(TokenRevocations::RevokedBy))
                        .col(text_null(TokenRevocations::Reason))
                        .take(),
                )
                .await?;
            manager
                .create_index(index(
                    "ix_token_revocations_revoked_at",
                    TokenRevocations::Table,
                    &[TokenRevocations::RevokedAt.into_iden()],
                ))
                .await?;

            manager
                .create_table(
                    Table::create()
                        .table(ChangeCounters::Table)
                        .col(id(ChangeCounters::Name))
                        .col(
                            ColumnDef::new(ChangeCounters::Version)
                                .big_integer()
                                .not_null()
                                .default(0),
                        )
                        .col(ts(ChangeCounters::UpdatedAt))
                        .take(),
                )
                .await?;
            let now = chrono::Utc::now();
            let mut seed = Query::insert();
            seed.into_table(ChangeCounters::Table).columns([
                ChangeCounters::Name,
                ChangeCounters::Version,
                ChangeCounters::UpdatedAt,
            ]);
            for name in [COUNTER_REGISTRY, COUNTER_REVOCATIONS] {
                seed.values([name.into(), 0i64.into(), now.into()])
                    .map_err(|e| DbErr::Migration(e.to_string()))?;
            }
            manager.exec_stmt(seed).await?;
            Ok(())
        }

        async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            for table in [
                ChangeCounters::Table.into_iden(),
                TokenRevocations::Table.into_iden(),
                ServerPromptAssociation::Table.into_iden(),
                ServerResourceAssociation::Table.into_iden(),
                ServerToolAssociation::Table.into_iden(),
                Servers::Table.into_iden(),
                Prompts::Table.into_iden(),
                ResourceTemplates::Table.into_iden(),
                Resources::Table.into_iden(),
                Tools::Table.into_iden(),
                Gateways::Table.into_iden(),
            ] {
                manager
                    .drop_table(Table::drop().table(table).if_exists().take())
                    .await?;
            }
            Ok(())
        }
    }
}
