//! Templates and warm pools: create, replace, read, list and delete templates (`/v1/templates`),
//! and read the state of every pool (`/v1/pools`).

use berth_api::{PoolList, PoolView, TemplateList, TemplateRequest, TemplateView};
use reqwest::Url;

use crate::{BerthClient, ClientError, join_segments};

impl BerthClient {
    /// `POST /v1/templates`: creates a template; a conflict (409) if its `name:tag` exists.
    pub async fn create_template(&self, request: &TemplateRequest) -> Result<TemplateView, ClientError> {
        self.send_json(self.http.post(templates_url(&self.base)).json(request))
            .await
    }

    /// `PUT /v1/templates/{reference}`: creates the template `reference` (`name` or `name:tag`)
    /// or replaces it.
    pub async fn put_template(&self, reference: &str, request: &TemplateRequest) -> Result<TemplateView, ClientError> {
        self.send_json(self.http.put(template_url(&self.base, reference)).json(request))
            .await
    }

    /// `GET /v1/templates/{reference}`: one template with its pool's state.
    pub async fn get_template(&self, reference: &str) -> Result<TemplateView, ClientError> {
        self.send_json(self.http.get(template_url(&self.base, reference))).await
    }

    /// `GET /v1/templates`: every template, ordered by name and tag.
    pub async fn list_templates(&self) -> Result<Vec<TemplateView>, ClientError> {
        let list: TemplateList = self.send_json(self.http.get(templates_url(&self.base))).await?;
        Ok(list.items)
    }

    /// `DELETE /v1/templates/{reference}`: removes the template and its idle pooled sandboxes.
    pub async fn delete_template(&self, reference: &str) -> Result<(), ClientError> {
        self.send(self.http.delete(template_url(&self.base, reference)))
            .await
            .map(drop)
    }

    /// `GET /v1/pools`: the pool of every template that has one.
    pub async fn list_pools(&self) -> Result<Vec<PoolView>, ClientError> {
        let list: PoolList = self
            .send_json(self.http.get(join_segments(&self.base, &["v1", "pools"])))
            .await?;
        Ok(list.items)
    }
}

fn templates_url(base: &Url) -> Url {
    join_segments(base, &["v1", "templates"])
}

/// The URL of one template; the reference stays one path segment whatever it contains.
fn template_url(base: &Url, reference: &str) -> Url {
    join_segments(base, &["v1", "templates", reference])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_base_url;

    #[test]
    fn template_urls_keep_the_reference_in_one_segment() {
        let base = parse_base_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(templates_url(&base).as_str(), "http://127.0.0.1:8080/v1/templates");
        assert_eq!(
            template_url(&base, "python:3.12").as_str(),
            "http://127.0.0.1:8080/v1/templates/python:3.12"
        );
        assert_eq!(
            template_url(&base, "../x?y#z").as_str(),
            "http://127.0.0.1:8080/v1/templates/..%2Fx%3Fy%23z"
        );
        let prefixed = parse_base_url("http://host/berth/").unwrap();
        assert_eq!(
            template_url(&prefixed, "py").as_str(),
            "http://host/berth/v1/templates/py"
        );
    }
}
