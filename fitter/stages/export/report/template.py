"""The report page: one HTML template with `$name` slots (string.Template)."""

from string import Template

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>headfit report: $title</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.row { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; text-align: center; font-size: 0.8rem; }
figure img, figure video { display: block; max-width: 256px; border: 1px solid #ddd; }
model-viewer { width: 640px; height: 480px; background: #f4f4f4; border: 1px solid #ddd; }
.notice { background: #fff4e0; border: 1px solid #f0c36d; padding: 0.6rem; max-width: 640px; }
table { border-collapse: collapse; font-size: 0.85rem; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.8rem; overflow: auto; font-size: 0.8rem; max-height: 600px; }
.curves img { max-width: 560px; }
.controls { margin: 0.4rem 0 1rem; } .controls button { margin-right: 6px; }
</style>
$viewer_script
</head>
<body>
<h1>headfit report: $title</h1>
<p>Written $written. Files: <a href="head.glb">head.glb</a>, <a href="head.obj">head.obj</a>
(<a href="head.mtl">.mtl</a>, <a href="head.png">.png</a>), <a href="turntable.mp4">turntable.mp4</a>,
<a href="metrics.json">metrics.json</a>, <a href="config.yaml">config.yaml</a>, <a href="run.log">run.log</a>.</p>

<h2>3D head</h2>
$viewer
$textures
$rigged

<h2>Turntable</h2>
<video src="turntable.mp4" controls loop muted autoplay playsinline width="$turntable_size"></video>

<h2>Evaluation views beside the input</h2>
<div class="row">$eval_views</div>
<h3>Exported views</h3>
<div class="row">$export_views</div>

<h2>Loss curves</h2>
<div class="row curves">$curves</div>

<h2>Metrics</h2>
$metrics

<h2>Resolved config</h2>
<pre>$config</pre>
</body>
</html>
""")

VIEWER = Template("""<model-viewer id="head" src="$src" alt="the fitted 3D head" camera-controls
  camera-orbit="0deg 85deg auto" shadow-intensity="0" exposure="1" environment-image="neutral"
  interaction-prompt="none"></model-viewer>""")

NO_VIEWER = Template("""<p class="notice" id="no-viewer">The interactive 3D viewer is not included: $reason.
Open <a href="head.glb">head.glb</a> in any glTF viewer.</p>""")

TEXTURES = Template("""<p id="texture-note">The viewer shows the lit texture (the photo's lighting baked in, head.png);
<a href="head_albedo.png">head_albedo.png</a> has the estimated lighting divided out, for relighting.$fit</p>
<div class="row">$figures</div>""")

RIGGED_VIEWER = Template("""<h3>Rigged head (<a href="head_rigged.glb">head_rigged.glb</a>)</h3>
<p>The sculpt wrapped onto the parametric head: a skeleton, the 52 ARKit blendshapes, the neutral expression at rest and
the texture in the shared UV layout; the hair is its own mesh. $summary</p>
<model-viewer id="rigged" src="$src" alt="the rigged head" camera-controls camera-orbit="0deg 85deg auto"
  shadow-intensity="0" exposure="1" environment-image="neutral" interaction-prompt="none" animation-name="neutral"
  animation-crossfade-duration="0"></model-viewer>
<div class="controls">
<button id="pose-neutral" onclick="showPose('neutral')">Neutral</button>
<button id="pose-photo" onclick="showPose('photo_expression')">Photo's expression</button>
<button id="play-clip" onclick="playClip()">Play expression clip</button>
</div>
<script>
function showPose(name, share = null) {
  // model-viewer switches animations on a later frame and restarts the new one at 0: seek after the switch.
  const v = document.getElementById('rigged');
  v.pause(); v.animationName = name;
  return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => {
    v.currentTime = share === null ? 0.5 : share * v.duration; done();
  })));
}
function playClip() {
  const v = document.getElementById('rigged');
  v.animationName = 'expression_demo'; v.currentTime = 0; v.play({repetitions: 1});
}
</script>""")
