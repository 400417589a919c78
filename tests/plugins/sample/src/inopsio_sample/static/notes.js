// The sample plugin's page script: proves a plugin ships static files without a build step.
document.documentElement.dataset.sampleNotes = "ready";
