import{u as ne,a as ae,b as oe,c as ie,d as le,r as i,i as R,e as ce,j as e,L as C,E as k,P as L,f as de,g as ue,s as w,h as me,k as J,l as pe,m as he,n as y}from"./index-Ddii9dhW.js";import{M as je,L as ye}from"./metricBuffer-EE-kN9xf.js";import"./uplot-Cf2ZdPUc.js";function V(n){const a=/^(\d+)-(\d+)$/.exec(n);return a?[Number(a[1]),Number(a[2])]:null}function be(n,a){if(a===null)return!0;const l=V(n),h=V(a);return!l||!h?!0:l[0]>h[0]||l[0]===h[0]&&l[1]>h[1]}const fe=y(`
  query TrainingJob($id: ID!, $slug: String!) {
    project(slug: $slug) {
      id
      viewerRole
      isArchived
    }
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        state
        attempt
        createdAt
        startedAt
        finishedAt
        reason
        cancelRequestedAt
        trainer
        target
        features
        hyperparameters
        validationFraction
        seed
        modelName
        metricKeys
        latestMetrics
        datasetVersion {
          id
          number
          dataset {
            id
            name
          }
        }
        modelVersion {
          id
          number
          metrics
          model {
            id
            name
          }
        }
      }
    }
  }
`),xe=y(`
  query JobMetricHistory($id: ID!, $key: String!, $maxPoints: Int!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metrics(key: $key, maxPoints: $maxPoints) {
          step
          value
        }
      }
    }
  }
`),ge=y(`
  query JobMetricKeys($id: ID!) {
    node(id: $id) {
      __typename
      ... on TrainingJob {
        id
        metricKeys
      }
    }
  }
`),Se=y(`
  subscription JobEvents($jobId: ID!, $after: String) {
    jobEvents(jobId: $jobId, after: $after) {
      cursor
      type
      state
      reason
      attempt
      step
      totalSteps
      epoch
      metrics
      examplesPerSecond
      etaSeconds
      modelVersion
    }
  }
`),$e=y(`
  mutation CancelTrainingJob($id: ID!) {
    cancelTrainingJob(id: $id) {
      __typename
      ... on TrainingJobSuccess {
        job {
          id
          state
          cancelRequestedAt
        }
      }
      ... on Error {
        code
        message
      }
    }
  }
`),ve=1e3;function Pe(n){if(n.type==="progress")return null;const a=n.type==="state"&&n.state?w(n.state):n.type==="resumed"?`Resumed from step ${n.step??"?"}`:n.type==="checkpoint"?`Checkpoint at step ${n.step??"?"}`:n.type==="model"?"Model version registered":n.type;return{key:n.cursor,label:a,detail:n.reason??null,at:null}}function we(){const n=ne(),a=n.slug??"",l=n.jobId??"",{session:h}=ae(),S=oe(),[{data:j,error:T,fetching:D},b]=ie({query:fe,variables:{id:l,slug:a}}),[K,O]=le($e),[Q,f]=i.useState(null),p=i.useMemo(()=>new je,[l]),[F,$]=i.useState(0),[x,H]=i.useState(0),[U,E]=i.useState(-1),q=U>=0,[B,G]=i.useState([]),[o,Y]=i.useState(null),[z,W]=i.useState(null),v=i.useRef(null),t=j?.node?.__typename==="TrainingJob"?j.node:null,g=t?.id,A=i.useRef(null);A.current=t?t.metricKeys:null;const N=t!==null;i.useEffect(()=>{if(!g||!N)return;let s=!0;const c=async()=>{if(x===0)return A.current??[];const d=await S.query(ge,{id:g},{requestPolicy:"network-only"}).toPromise();if(d.error)throw d.error;const m=d.data?.node;return m?.__typename==="TrainingJob"?m.metricKeys:[]};return(async()=>{const d=await c();return Promise.all(d.map(async m=>{const u=await S.query(xe,{id:g,key:m,maxPoints:ve},{requestPolicy:"network-only"}).toPromise();if(u.error)throw u.error;const M=u.data?.node;return[m,M?.__typename==="TrainingJob"?M.metrics:[]]}))})().then(d=>{s&&(p.clear(),p.replay(Object.fromEntries(d)),$(m=>m+1),E(x))}).catch(d=>{s&&(f(d),E(x))}),()=>{s=!1}},[g,N,x,S,p]);const X=i.useCallback((s,c)=>{const r=c.jobEvents,d=v.current?.jobId===l?v.current.cursor:null;if(!be(r.cursor,d))return c;v.current={jobId:l,cursor:r.cursor},r.type==="resumed"&&typeof r.step=="number"&&(p.truncateAfter(r.step),$(u=>u+1)),r.type==="progress"&&typeof r.step=="number"&&(p.append(r.step,r.metrics??{})&&$(u=>u+1),Y({step:r.step,totalSteps:r.totalSteps??null,epoch:r.epoch??null,examplesPerSecond:r.examplesPerSecond??null,etaSeconds:r.etaSeconds??null}));const m=Pe(r);return m&&G(u=>[...u,{...m,at:new Date().toISOString()}]),r.type==="state"&&r.state&&(W(r.state),R(r.state)&&(b({requestPolicy:"network-only"}),H(u=>u+1))),r.type==="model"&&b({requestPolicy:"network-only"}),c},[p,b,l]),Z=q&&t!==null&&!R(t.state),[I]=ce({query:Se,variables:{jobId:l,after:null},pause:!Z},X);if(D&&!j)return e.jsx(C,{what:"the job"});if(!j&&T)return e.jsx(k,{error:T});if(!t)return e.jsxs("section",{children:[e.jsx(L,{slug:a}),e.jsx("h1",{children:"Job not found"}),e.jsx("p",{children:"There is no training job here that you may see."})]});const P=t.state!=="QUEUED"&&t.state!=="RUNNING"?t.state:z??t.state,ee=de(j?.project?.viewerRole,h?.isAdmin??!1),te=ue(ee,"DEVELOPER")&&!R(P)&&!t.cancelRequestedAt&&!j?.project?.isArchived;async function se(){if(!t)return;f(null);const s=await O({id:t.id}),c=s.data?.cancelTrainingJob;s.error?f(s.error):f(he(c)),b({requestPolicy:"network-only"})}const re=[{key:"created",label:"Queued",detail:null,at:t.createdAt},...t.startedAt?[{key:"started",label:"Started",detail:null,at:t.startedAt}]:[],...t.cancelRequestedAt?[{key:"cancel",label:"Cancel requested",detail:null,at:t.cancelRequestedAt}]:[],...t.finishedAt?[{key:"finished",label:w(t.state),detail:t.reason??null,at:t.finishedAt}]:[]],_=t.latestMetrics??{};return e.jsxs("section",{children:[e.jsx(L,{slug:a}),e.jsxs("h1",{children:["Training job: ",t.modelName," ",e.jsx("span",{className:`state state-${P.toLowerCase()}`,children:w(P)})]}),e.jsxs("p",{className:"muted",children:[t.trainer," predicting ",e.jsx("strong",{children:t.target}),t.datasetVersion&&e.jsxs(e.Fragment,{children:[" ","from"," ",e.jsxs(me,{to:`/projects/${a}/datasets/${encodeURIComponent(t.datasetVersion.dataset.name)}`,children:[t.datasetVersion.dataset.name," v",t.datasetVersion.number]})]}),t.attempt>1&&` · attempt ${t.attempt}`]}),t.reason&&e.jsxs("p",{children:["Reason: ",t.reason]}),e.jsx(k,{error:Q}),I.error&&e.jsx(k,{error:I.error}),te&&e.jsx("button",{type:"button",className:"danger",disabled:K.fetching,onClick:()=>void se(),children:"Cancel job"}),o&&e.jsxs("p",{children:[e.jsx("progress",{"aria-label":"Training progress",max:o.totalSteps??void 0,value:o.step})," Step ",o.step,o.totalSteps!==null&&` of ${o.totalSteps}`,o.epoch!==null&&`, epoch ${o.epoch}`,o.examplesPerSecond!==null&&`, ${J(o.examplesPerSecond)} examples/s`,o.etaSeconds!==null&&`, about ${Math.round(o.etaSeconds)} s left`]}),e.jsx("h2",{children:"Loss and accuracy"}),q?e.jsx(ye,{buffer:p,revision:F}):e.jsx(C,{what:"the metric history"}),Object.keys(_).length>0&&e.jsxs(e.Fragment,{children:[e.jsx("h2",{children:"Latest metrics"}),e.jsx("dl",{className:"facts",children:Object.entries(_).map(([s,c])=>e.jsxs("div",{children:[e.jsx("dt",{children:s}),e.jsx("dd",{children:J(c)})]},s))})]}),t.modelVersion&&e.jsxs("p",{children:["Registered model version ",t.modelVersion.model.name," v",t.modelVersion.number,"."]}),e.jsx("h2",{children:"Timeline"}),e.jsxs("ol",{className:"timeline","aria-label":"State timeline",children:[re.map(s=>e.jsxs("li",{children:[e.jsx("strong",{children:s.label})," ",e.jsx("time",{dateTime:s.at??void 0,children:pe(s.at)}),s.detail&&e.jsxs("span",{className:"muted",children:[" ",s.detail]})]},s.key)),B.map(s=>e.jsxs("li",{children:[e.jsx("strong",{children:s.label})," ",e.jsx("span",{className:"muted",children:"(live)"}),s.detail&&e.jsxs("span",{className:"muted",children:[" ",s.detail]})]},s.key))]}),e.jsx("h2",{children:"Hyperparameters"}),e.jsxs("dl",{className:"facts",children:[Object.entries(t.hyperparameters??{}).map(([s,c])=>e.jsxs("div",{children:[e.jsx("dt",{children:s}),e.jsx("dd",{children:J(c)})]},s)),e.jsxs("div",{children:[e.jsx("dt",{children:"validation fraction"}),e.jsx("dd",{children:t.validationFraction})]}),e.jsxs("div",{children:[e.jsx("dt",{children:"seed"}),e.jsx("dd",{children:t.seed})]})]})]})}export{we as default};
