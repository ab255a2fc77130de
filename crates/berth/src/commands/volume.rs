//! `berth volume`: makes, lists, inspects and deletes persistent volumes, which sandboxes mount
//! with `berth run -v NAME:/path`.

use berth_api::{VolumeRequest, VolumeView};
use berth_client::BerthClient;
use clap::{Args, Subcommand};

use crate::output::{self, DocFormat, ListFormat, emit, emit_line, render_table};

#[derive(Debug, Clone, Subcommand)]
pub enum VolumeCommand {
    /// Make a volume
    Create(CreateArgs),
    /// List volumes (yours; an admin's key: everyone's, or --owner's)
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show a volume and the sandboxes that mount it
    Inspect(NameArgs),
    /// Delete volumes and their data (refused while a sandbox mounts one)
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Whose volume it is (admins) [default: the key's owner]
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// The volume's name
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    /// Only this owner's (admins)
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ListFormat::Table)]
    pub output: ListFormat,
}

#[derive(Debug, Clone, Args)]
pub struct NameArgs {
    /// Whose volume (admins) [default: the key's owner]
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Whose volumes (admins) [default: the key's owner]
    #[arg(long, value_name = "OWNER")]
    pub owner: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn run(client: &BerthClient, command: &VolumeCommand) -> anyhow::Result<()> {
    match command {
        VolumeCommand::Create(args) => {
            let request = VolumeRequest {
                name: args.name.clone(),
                owner: args.owner.clone(),
            };
            let volume = client.create_volume(&request).await?;
            emit_line(&volume.name)?;
        }
        VolumeCommand::Ls(args) => {
            let volumes = client.list_volumes(args.owner.as_deref()).await?;
            let text = match args.output {
                ListFormat::Table => volume_table(&volumes),
                ListFormat::Json => output::document(&volumes, DocFormat::Json)?,
                ListFormat::Yaml => output::document(&volumes, DocFormat::Yaml)?,
            };
            emit(&text)?;
        }
        VolumeCommand::Inspect(args) => {
            let volume = client.get_volume(&args.name, args.owner.as_deref()).await?;
            emit(&output::document(&volume, DocFormat::Json)?)?;
        }
        VolumeCommand::Rm(args) => {
            for name in &args.names {
                client.delete_volume(name, args.owner.as_deref()).await?;
                emit_line(name)?;
            }
        }
    }
    Ok(())
}

/// The `berth volume ls` table.
pub fn volume_table(volumes: &[VolumeView]) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|volume| {
            vec![
                volume.name.clone(),
                volume.owner.clone(),
                volume
                    .created_at
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_default(),
                if volume.mounted_by.is_empty() {
                    "-".to_owned()
                } else {
                    volume.mounted_by.join(",")
                },
            ]
        })
        .collect();
    render_table(&["NAME", "OWNER", "CREATED", "MOUNTED BY"], &rows)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(subcommand)]
        volume: VolumeCommand,
    }

    #[test]
    fn subcommands_parse_their_names_and_owner() {
        let cli = TestCli::try_parse_from(["t", "rm", "--owner", "team-a", "a", "b"]).unwrap();
        let VolumeCommand::Rm(args) = cli.volume else {
            panic!("rm")
        };
        assert_eq!(args.names, ["a", "b"]);
        assert_eq!(args.owner.as_deref(), Some("team-a"));
        assert!(TestCli::try_parse_from(["t", "rm"]).is_err());
        assert!(TestCli::try_parse_from(["t", "create"]).is_err());
    }

    #[test]
    fn the_table_shows_who_mounts_each_volume() {
        let volumes = vec![
            VolumeView {
                name: "data".into(),
                owner: "team-a".into(),
                created_at: None,
                mounted_by: vec!["0123456789abcdef".into()],
            },
            VolumeView {
                name: "idle".into(),
                owner: "team-a".into(),
                created_at: None,
                mounted_by: Vec::new(),
            },
        ];
        let table = volume_table(&volumes);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{table}");
        assert!(lines[1].contains("0123456789abcdef"), "{table}");
        assert!(lines[2].trim_end().ends_with('-'), "{table}");
    }
}
