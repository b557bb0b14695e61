//! Issue #21: the conformance suite of `TemplateStore`, run against each backend.

use chrono::Duration;
use palaver::store::{
    self, StoreError, Template, TemplateDefinition, TemplateMessage, TemplateRole, TemplateVariable,
};
use uuid::Uuid;

use crate::store_conformance::open;
use crate::support::db::backends;

fn template(user: &str, name: &str, at: store::Timestamp) -> Template {
    Template {
        id: Uuid::now_v7(),
        user_id: user.to_owned(),
        version: 1,
        name: name.to_owned(),
        definition: TemplateDefinition {
            system: Some("You review {{language}} code.".to_owned()),
            messages: vec![TemplateMessage {
                role: TemplateRole::User,
                content: "Be {{tone}}.".to_owned(),
            }],
            variables: vec![
                TemplateVariable {
                    name: "language".to_owned(),
                    required: true,
                    default: None,
                },
                TemplateVariable {
                    name: "tone".to_owned(),
                    required: false,
                    default: Some("kind".to_owned()),
                },
            ],
            model: Some("gpt-4o-mini".to_owned()),
            temperature: Some(0.0),
            max_tokens: Some(300),
        },
        created_at: at,
        updated_at: at,
    }
}

#[tokio::test]
async fn templates_keep_every_version_and_their_owner() {
    for backend in backends() {
        let (store, _db) = open(backend).await;
        let t0 = store::now();
        let first = template("ana", "review", t0);
        store.create_template(&first).await.unwrap();
        assert!(
            matches!(
                store.create_template(&first).await,
                Err(StoreError::Conflict)
            ),
            "{backend}: an id is created once"
        );
        let got = store.get_template("ana", first.id, None).await.unwrap();
        assert_eq!(got.as_ref(), Some(&first), "{backend}: round trip");
        assert_eq!(
            store.get_template("bob", first.id, None).await.unwrap(),
            None,
            "{backend}: another user's template is not there"
        );

        let mut second = first.clone();
        second.version = 2;
        second.name = "review v2".to_owned();
        second.definition.system = None;
        second.definition.temperature = None;
        second.updated_at = t0 + Duration::seconds(3);
        assert!(store.add_template_version(&second).await.unwrap());
        assert!(
            matches!(
                store.add_template_version(&second).await,
                Err(StoreError::Conflict)
            ),
            "{backend}: a version is stored once"
        );
        let mut skipped = second.clone();
        skipped.version = 4;
        assert!(
            !store.add_template_version(&skipped).await.unwrap(),
            "{backend}: only the version after the newest is added"
        );
        let mut stolen = second.clone();
        stolen.version = 3;
        stolen.user_id = "bob".to_owned();
        assert!(
            !store.add_template_version(&stolen).await.unwrap(),
            "{backend}: another user cannot add a version"
        );

        let newest = store.get_template("ana", first.id, None).await.unwrap();
        assert_eq!(
            newest.as_ref(),
            Some(&second),
            "{backend}: the newest version"
        );
        let old = store.get_template("ana", first.id, Some(1)).await.unwrap();
        assert_eq!(
            old.as_ref(),
            Some(&first),
            "{backend}: the old version stays"
        );
        assert_eq!(
            store.get_template("ana", first.id, Some(3)).await.unwrap(),
            None
        );

        let other = template("ana", "alpha", t0);
        store.create_template(&other).await.unwrap();
        store
            .create_template(&template("bob", "bob's", t0))
            .await
            .unwrap();
        let listed = store.list_templates("ana").await.unwrap();
        let names: Vec<(&str, i64)> = listed
            .iter()
            .map(|t| (t.name.as_str(), t.version))
            .collect();
        assert_eq!(names, [("alpha", 1), ("review v2", 2)], "{backend}");

        assert!(!store.delete_template("bob", first.id).await.unwrap());
        assert!(store.delete_template("ana", first.id).await.unwrap());
        assert!(!store.delete_template("ana", first.id).await.unwrap());
        assert_eq!(
            store.get_template("ana", first.id, Some(1)).await.unwrap(),
            None
        );
        assert_eq!(store.list_templates("ana").await.unwrap().len(), 1);
    }
}
