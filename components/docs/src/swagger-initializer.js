// Starts Swagger UI on /openapi.json. Everything it loads comes from this
// server (the page's Content-Security-Policy allows nothing else).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    displayRequestDuration: true,
    defaultModelsExpandDepth: 0,
    // No badge from, and no call to, the public validator.
    validatorUrl: null,
    // Ignore ?url= and ?configUrl=: this page shows this API's document only.
    queryConfigEnabled: false,
  });
});
