// Starts Swagger UI on /schema/swagger from the files the service itself serves
// (platform/pages/api_docs.py): no CDN, no validator badge from another host.
const root = document.getElementById("swagger-ui");
if (root && window.SwaggerUIBundle) {
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.url,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
}
